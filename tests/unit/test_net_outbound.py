"""The guarded client (net/outbound.py), against a real loopback HTTP server: what is refused
never reaches it, what the operator listed does. Room-triggered requests (https only, local
hosts by name, a rate per host, unreachable hosts left alone) and what anonymous callers
trigger (private targets allow-listed by host and port, slots apart for configured and
caller-named servers, a failure cache keyed by server name)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer

from rtcbot.net.outbound import (
    AddressPolicy,
    GuardedClient,
    GuardedConnector,
    OutboundRefused,
    anonymous_callers_client,
    authority_of,
    is_public,
)
from rtcbot.net.resolver import BoundedResolver
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
    whole. A fake resolver: such a DNS answer cannot be produced on this machine."""

    class TwoAnswers(AbstractResolver):
        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            return [
                ResolveResult(
                    hostname=host, host=a, port=port, family=socket.AF_INET, proto=0, flags=0
                )
                for a in ("93.184.216.34", "10.0.0.5")
            ]

        async def close(self) -> None:
            pass

    connector = GuardedConnector(AddressPolicy(), resolver=TwoAnswers())
    try:
        with pytest.raises(OutboundRefused, match="address"):
            await connector._resolve_host("rebind.example", 443)
    finally:
        await connector.close()


# -- what anonymous callers trigger -----------------------------------------------------------
@pytest.fixture
async def slow_server() -> AsyncIterator[TestServer]:
    release = asyncio.Event()
    inside = {"now": 0, "peak": 0}

    async def ok(request: web.Request) -> web.Response:
        if request.path == "/slow":
            inside["now"] += 1
            inside["peak"] = max(inside["peak"], inside["now"])
            try:
                await release.wait()
            finally:
                inside["now"] -= 1
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/{tail:.*}", ok)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    srv.inside = inside  # type: ignore[attr-defined]
    yield srv
    release.set()
    await srv.close()


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("169.254.169.254", False),  # cloud metadata
        ("::1", False),
        ("fe80::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("224.0.0.1", False),
        ("0.0.0.0", False),
        ("93.184.215.14", True),
        ("2606:4700::1111", True),
        # IPv6 forms that carry an IPv4 address are judged by it (review finding).
        ("64:ff9b::7f00:1", False),  # NAT64 well-known prefix → 127.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 → 169.254.169.254
        ("64:ff9b::5db8:d70e", True),  # NAT64 → 93.184.215.14
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
        ("2002:a00:1::1", False),  # 6to4 of 10.0.0.1
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", False),  # Teredo, client 127.0.0.1
        ("::7f00:1", False),  # IPv4-compatible (deprecated)
        ("::808:808", False),
        ("64:ff9b:1::a00:1", False),  # local-use NAT64
        ("fec0::1", False),  # site-local (deprecated)
        ("ff0e::1", False),  # global-scope multicast
        ("not-an-ip", False),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public(address) is public


def test_authority_of_urls() -> None:
    assert authority_of("http://127.0.0.1:8008/x") == "127.0.0.1:8008"
    assert authority_of("https://Matrix.Example.org") == "matrix.example.org:443"
    assert authority_of("http://[::1]:80") == "::1:80"


async def test_loopback_is_refused_unless_its_host_and_port_are_allowed(
    slow_server: TestServer,
) -> None:
    url = str(slow_server.make_url("/x"))
    port = slow_server.port
    refused = anonymous_callers_client(
        lambda: [f"127.0.0.1:{port + 1}"], timeout=5
    )  # another port
    with pytest.raises(OutboundRefused):
        async with refused.get(url):
            pass
    await refused.close()

    allowed = anonymous_callers_client(lambda: [f"127.0.0.1:{port}"], timeout=5)
    async with allowed.get(url) as resp:
        assert resp.status == 200
    await allowed.close()


async def test_at_most_limit_requests_at_once_and_waiting_counts_towards_the_timeout(
    slow_server: TestServer,
) -> None:
    out = anonymous_callers_client(lambda: [f"127.0.0.1:{slow_server.port}"], limit=2, timeout=0.5)
    slow = str(slow_server.make_url("/slow"))

    async def one() -> str:
        try:
            async with out.get(slow) as resp:
                return str(resp.status)
        except (aiohttp.ClientError, TimeoutError) as e:
            return type(e).__name__

    results = await asyncio.gather(*(one() for _ in range(4)))
    # Never more than two at the server; the two that held the slots ran into their timeout;
    # the others failed too, each within its own time: waiting for a slot (refused) or, when a
    # slot came free just before its time was up (a loaded machine's luck), in the request.
    assert slow_server.inside["peak"] == 2  # type: ignore[attr-defined]
    assert set(results) <= {"OutboundRefused", "TimeoutError"}, results
    assert results.count("TimeoutError") >= 2, results
    await out.close()


def test_the_failure_cache_remembers_a_server_for_a_few_seconds() -> None:
    now = [100.0]
    out = anonymous_callers_client(lambda: [], timeout=5, failure_ttl=10, clock=lambda: now[0])
    assert not out.recently_failed("tarpit.example")
    out.failed("tarpit.example")
    assert out.recently_failed("tarpit.example")
    assert not out.recently_failed("other.example")
    now[0] += 10.5
    assert not out.recently_failed("tarpit.example")


async def test_lookups_run_on_threads_of_their_own_and_time_out() -> None:
    """Review finding: DNS for untrusted names ran on the loop's shared default executor. A
    lookup that never answers (a slow DNS server cannot be produced on this machine: the
    blocking getaddrinfo is replaced by one that waits on an event) fails in time for its
    caller, and the default executor stays free meanwhile."""
    import threading

    from rtcbot.net import resolver as resolver_module

    release = threading.Event()
    seen_threads: list[str] = []

    def stuck(host: str, port: int, family: int, flags: int) -> list[Any]:
        seen_threads.append(threading.current_thread().name)
        release.wait(10)
        return []

    original = resolver_module._getaddrinfo
    resolver_module._getaddrinfo = stuck
    r = resolver_module.BoundedResolver(threads=1, timeout=0.2)
    try:
        with pytest.raises(resolver_module.LookupTimeout):
            await r.resolve("never-answers.example", 443)
        # The shared executor still runs work at once while our one thread is stuck.
        loop = asyncio.get_running_loop()
        assert await asyncio.wait_for(loop.run_in_executor(None, lambda: 7), 5) == 7
        # A second lookup waits for the busy thread and times out too, without a new thread.
        with pytest.raises(resolver_module.LookupTimeout):
            await r.resolve("also-never.example", 443)
        assert seen_threads and all(t.startswith("rtcbot-dns") for t in seen_threads)
    finally:
        resolver_module._getaddrinfo = original
        release.set()
        await r.close()


async def test_the_own_resolver_answers_real_lookups() -> None:
    r = BoundedResolver()
    try:
        found = await r.resolve("127.0.0.1", 8080)
        assert [(x["host"], x["port"]) for x in found] == [("127.0.0.1", 8080)]
        found6 = await r.resolve("::1", 80, socket.AF_INET6)
        assert all(x["host"] == "::1" for x in found6)
    finally:
        await r.close()
