"""The authorization service's client for anonymous callers (auth/outbound.py), against a
real aiohttp server on 127.0.0.1: private targets refused unless allow-listed by host and
port, a small pool, a failure cache with a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from rtcbot.auth.outbound import AnonymousOutbound, OutboundRefused, authority_of, is_public


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    release = asyncio.Event()

    async def ok(request: web.Request) -> web.Response:
        if request.path == "/slow":
            await release.wait()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/{tail:.*}", ok)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
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
    server: TestServer,
) -> None:
    url = str(server.make_url("/x"))
    port = server.port
    refused = AnonymousOutbound(lambda: [f"127.0.0.1:{port + 1}"])  # another port only
    with pytest.raises(OutboundRefused):
        async with refused.get(url):
            pass
    await refused.close()

    allowed = AnonymousOutbound(lambda: [f"127.0.0.1:{port}"])
    async with allowed.get(url) as resp:
        assert resp.status == 200
    await allowed.close()


async def test_at_most_limit_requests_at_once_and_waiting_counts_towards_the_timeout(
    server: TestServer,
) -> None:
    out = AnonymousOutbound(lambda: [f"127.0.0.1:{server.port}"], limit=2, timeout_s=0.5)
    slow = str(server.make_url("/slow"))

    async def one() -> str:
        try:
            async with out.get(slow) as resp:
                return str(resp.status)
        except (aiohttp.ClientError, TimeoutError) as e:
            return type(e).__name__

    results = await asyncio.gather(*(one() for _ in range(4)))
    # Two held the slots until their timeout; two never got one.
    assert sorted(results) == [
        "OutboundRefused",
        "OutboundRefused",
        "TimeoutError",
        "TimeoutError",
    ]
    await out.close()


def test_the_failure_cache_remembers_a_server_for_a_few_seconds() -> None:
    now = [100.0]
    out = AnonymousOutbound(lambda: [], failure_cache_s=10, clock=lambda: now[0])
    assert not out.recently_failed("tarpit.example")
    out.failed("tarpit.example")
    assert out.recently_failed("tarpit.example")
    assert not out.recently_failed("other.example")
    now[0] += 10.5
    assert not out.recently_failed("tarpit.example")
