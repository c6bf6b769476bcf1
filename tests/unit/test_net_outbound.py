"""The guarded client for room-triggered requests (net/outbound.py), against a real loopback
HTTP server: what is refused never reaches it, what the operator listed does."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from rtcbot.net.outbound import AddressPolicy, GuardedClient, OutboundRefused, _CheckingResolver
from rtcbot_stack.stack import free_port


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, list[str]]]:
    seen: list[str] = []

    async def any_request(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", any_request)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port, seen
    finally:
        await runner.cleanup()


def local(*hosts: str) -> AddressPolicy:
    return AddressPolicy(local_hosts=lambda: set(hosts))


async def post(client: GuardedClient, url: str) -> int:
    async with client.post(url, json={}) as resp:
        return resp.status


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:{port}/sfu/get", "scheme"),  # plain http, host not listed
        ("https://127.0.0.1:{port}/sfu/get", "address"),  # loopback literal
        ("https://localhost:{port}/sfu/get", "address"),  # a name that resolves to loopback
        ("https://[::ffff:127.0.0.1]:{port}/sfu/get", "address"),
        ("https://user@127.0.0.1:{port}/sfu/get", "scheme"),
        ("file:///etc/passwd", "scheme"),
    ],
)
async def test_unlisted_local_destinations_get_no_request(
    server: tuple[int, list[str]], url: str, reason: str
) -> None:
    port, seen = server
    client = GuardedClient(AddressPolicy())
    try:
        with pytest.raises(OutboundRefused) as refused:
            await post(client, url.format(port=port))
    finally:
        await client.close()
    assert refused.value.reason == reason
    assert seen == []


async def test_a_listed_local_host_is_reached(server: tuple[int, list[str]]) -> None:
    port, seen = server
    client = GuardedClient(local("127.0.0.1"))
    try:
        assert await post(client, f"http://127.0.0.1:{port}/svc/sfu/get") == 200
    finally:
        await client.close()
    assert seen == ["/svc/sfu/get"]


async def test_a_burst_then_the_rate_limit(server: tuple[int, list[str]]) -> None:
    port, seen = server
    now = [100.0]
    client = GuardedClient(local("127.0.0.1"), burst=2, rate_per_s=0.5, clock=lambda: now[0])
    url = f"http://127.0.0.1:{port}/x"
    try:
        assert [await post(client, url), await post(client, url)] == [200, 200]
        with pytest.raises(OutboundRefused, match="rate"):
            await post(client, url)
        now[0] += 2.0  # one token back
        assert await post(client, url) == 200
    finally:
        await client.close()
    assert len(seen) == 3


async def test_an_unreachable_host_is_left_alone_for_a_while() -> None:
    now = [100.0]
    client = GuardedClient(local("127.0.0.1"), failure_ttl=30, clock=lambda: now[0])
    url = f"http://127.0.0.1:{free_port()}/x"  # nothing listens there
    try:
        with pytest.raises(aiohttp.ClientConnectorError):
            await post(client, url)
        with pytest.raises(OutboundRefused, match="recent_failure"):
            await post(client, url)
        now[0] += 31
        with pytest.raises(aiohttp.ClientConnectorError):
            await post(client, url)
    finally:
        await client.close()


def test_the_address_policy() -> None:
    policy = AddressPolicy()
    for address in (
        "127.0.0.1",
        "10.0.0.5",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:10.0.0.1",
    ):
        assert not policy.allows_address("any.example", address), address
    for address in ("93.184.216.34", "2606:4700::1111"):
        assert policy.allows_address("any.example", address), address
    assert local("sfu.lan").allows_address("SFU.lan", "10.0.0.5")


async def test_every_resolved_address_is_checked() -> None:
    """A DNS answer with one public and one private address (rebinding) is refused as a
    whole. A fake inner resolver: such a DNS answer cannot be produced on this machine."""

    class TwoAnswers:
        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[dict[str, object]]:
            return [
                {
                    "hostname": host,
                    "host": a,
                    "port": port,
                    "family": socket.AF_INET,
                    "proto": 0,
                    "flags": 0,
                }
                for a in ("93.184.216.34", "10.0.0.5")
            ]

        async def close(self) -> None:
            pass

    resolver = _CheckingResolver(AddressPolicy())
    resolver._inner = TwoAnswers()  # type: ignore[assignment]
    with pytest.raises(OutboundRefused, match="address"):
        await resolver.resolve("rebind.example", 443)
