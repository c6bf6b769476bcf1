"""Federation server discovery (well-known delegation, port 8448) on loopback, without DNS.

A static resolver maps the `*.test` names to 127.0.0.1; one aiohttp server plays every
name's `/.well-known/matrix/server` (told apart by the Host header), another the federation
API. Production uses https, 443 and 8448; here the scheme and ports are injected.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestClient, TestServer

from rtcbot.auth.service import AuthService
from rtcbot.auth.settings import AuthServiceSettings
from rtcbot.matrix.room_members import RoomMembers
from rtcbot.matrix.server_discovery import (
    FederationDiscovery,
    InvalidServerName,
    ServerName,
    parse_server_name,
)
from rtcbot.net.outbound import anonymous_callers_client

ROOM = "!call:delegating.test"


class StaticResolver(AbstractResolver):
    """Every `*.test` name is 127.0.0.1, except nxdomain.test; nothing else resolves."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if not host.endswith(".test") or host == "nxdomain.test":
            raise OSError(f"{host} does not resolve here")
        return [
            ResolveResult(
                hostname=host,
                host="127.0.0.1",
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        pass


@dataclass
class Servers:
    well_known_port: int
    federation_port: int
    well_known_hits: list[str] = field(default_factory=list)
    userinfo_hosts: list[str] = field(default_factory=list)
    answers: dict[str, Any] = field(default_factory=dict)


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    never = asyncio.Event()
    state: list[Servers] = []

    async def well_known(request: web.Request) -> web.StreamResponse:
        host = request.host.split(":")[0]
        s = state[0]
        s.well_known_hits.append(host)
        answer = s.answers.get(host)
        if answer == "slow":
            await never.wait()
        if answer == "redirect":
            raise web.HTTPFound(f"http://127.0.0.1:{s.federation_port}/elsewhere")
        if isinstance(answer, bytes):
            return web.Response(body=answer, content_type="application/json")
        if answer is None:
            raise web.HTTPNotFound()
        return web.json_response(answer)

    async def userinfo(request: web.Request) -> web.Response:
        state[0].userinfo_hosts.append(request.host)
        if request.query.get("access_token") != "good-token":
            return web.json_response({"errcode": "M_UNKNOWN_TOKEN"}, status=401)
        return web.json_response({"sub": "@alice:delegating.test"})

    wk_app = web.Application()
    wk_app.router.add_get("/.well-known/matrix/server", well_known)
    fed_app = web.Application()
    fed_app.router.add_get("/_matrix/federation/v1/openid/userinfo", userinfo)
    async with (
        TestServer(wk_app, host="127.0.0.1") as wk,
        TestServer(fed_app, host="127.0.0.1") as fed,
    ):
        assert wk.port is not None and fed.port is not None
        s = Servers(wk.port, fed.port)
        s.answers = {
            "delegating.test": {"m.server": f"fed.test:{fed.port}"},
            "noport.test": {"m.server": "fed.test"},
            "ip.test": {"m.server": f"127.0.0.1:{fed.port}"},
            "redirect.test": "redirect",
            "garbage.test": b"<html>",
            "huge.test": json.dumps({"m.server": "fed.test", "pad": "x" * 20000}).encode(),
            "badname.test": {"m.server": "fed.test/evil?x="},
            "notastring.test": {"m.server": 8448},
            "slow.test": "slow",
        }
        state.append(s)
        yield s
        never.set()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(resolver=StaticResolver())
    async with aiohttp.ClientSession(connector=connector) as s:
        yield s


def discovery(
    session: aiohttp.ClientSession, servers: Servers, **kwargs: Any
) -> FederationDiscovery:
    return FederationDiscovery(
        session,
        scheme="http",
        well_known_port=servers.well_known_port,
        default_port=servers.federation_port,
        timeout=kwargs.pop("timeout", 2.0),
        **kwargs,
    )


# -- the grammar -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("example.org", ServerName("example.org", None, False)),
        ("example.org:8448", ServerName("example.org", 8448, False)),
        ("1.2.3.4", ServerName("1.2.3.4", None, True)),
        ("1.2.3.4:80", ServerName("1.2.3.4", 80, True)),
        ("[::1]", ServerName("[::1]", None, True)),
        ("[2001:db8::1]:8008", ServerName("[2001:db8::1]", 8008, True)),
        ("localhost", ServerName("localhost", None, False)),
    ],
)
def test_valid_server_names(text: str, expected: ServerName) -> None:
    assert parse_server_name(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hs.test/x?",
        "hs.test@127.0.0.1",
        "hs test",
        "hs.test:99999999",
        "hs.test:0",
        "hs.test:65536",
        "hs.test:",
        "hs.test:80:81",
        "[zz]",
        "[::1",
        "[::1]x",
        "[::1]:",
        "::1",
        "x" * 256,
        "hs.tést",
    ],
)
def test_invalid_server_names(text: str) -> None:
    with pytest.raises(InvalidServerName):
        parse_server_name(text)


# -- the discovery rules ---------------------------------------------------------------------
async def test_ip_literals_and_explicit_ports_skip_the_well_known(
    session: aiohttp.ClientSession, servers: Servers
) -> None:
    d = discovery(session, servers)
    fed = servers.federation_port
    assert await d.base_url("127.0.0.1") == f"http://127.0.0.1:{fed}"
    assert await d.base_url("127.0.0.1:1234") == "http://127.0.0.1:1234"
    assert await d.base_url("[::1]:1234") == "http://[::1]:1234"
    assert await d.base_url("delegating.test:1234") == "http://delegating.test:1234"
    assert servers.well_known_hits == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("delegating.test", "http://fed.test:{fed}"),
        ("noport.test", "http://fed.test:{fed}"),
        ("ip.test", "http://127.0.0.1:{fed}"),
        ("plain.test", "http://plain.test:{fed}"),  # 404: the name itself, port 8448
        ("redirect.test", "http://redirect.test:{fed}"),  # redirects are not followed
        ("garbage.test", "http://garbage.test:{fed}"),
        ("huge.test", "http://huge.test:{fed}"),  # over 16 KiB: ignored
        ("badname.test", "http://badname.test:{fed}"),  # not a server name: ignored
        ("notastring.test", "http://notastring.test:{fed}"),
        ("nxdomain.test", "http://nxdomain.test:{fed}"),
    ],
)
async def test_well_known_delegation_and_fallbacks(
    session: aiohttp.ClientSession, servers: Servers, name: str, expected: str
) -> None:
    d = discovery(session, servers)
    assert await d.base_url(name) == expected.format(fed=servers.federation_port)


async def test_a_well_known_that_never_answers_times_out(
    session: aiohttp.ClientSession, servers: Servers
) -> None:
    d = discovery(session, servers, timeout=0.2)
    assert await d.base_url("slow.test") == f"http://slow.test:{servers.federation_port}"


async def test_answers_are_cached_failures_shorter(
    session: aiohttp.ClientSession, servers: Servers
) -> None:
    now = [0.0]
    d = discovery(
        session, servers, cache_seconds=100, failure_cache_seconds=10, clock=lambda: now[0]
    )
    for _ in range(3):
        await d.base_url("delegating.test")
        await d.base_url("plain.test")
    assert servers.well_known_hits == ["delegating.test", "plain.test"]
    now[0] = 10.0  # the failure expired, the delegation not
    await d.base_url("delegating.test")
    await d.base_url("plain.test")
    assert servers.well_known_hits == ["delegating.test", "plain.test", "plain.test"]
    now[0] = 100.0
    await d.base_url("delegating.test")
    assert servers.well_known_hits[-1] == "delegating.test"


async def test_the_cache_is_bounded(session: aiohttp.ClientSession, servers: Servers) -> None:
    d = discovery(session, servers, max_entries=2)
    for name in ("a.test", "b.test", "c.test", "c.test", "a.test"):
        await d.base_url(name)
    assert servers.well_known_hits == ["a.test", "b.test", "c.test", "a.test"]


# -- the authorization service checks OpenID where discovery says ----------------------------
async def test_auth_service_verifies_openid_at_the_delegated_server(
    session: aiohttp.ClientSession, servers: Servers
) -> None:
    settings = [
        AuthServiceSettings(
            enabled=True,
            livekit_url="ws://127.0.0.1:1",
            api_key="k",
            api_secret="unit-discovery-secret-0123456789abcdef",
            full_access_homeservers=("elsewhere.test",),
        )
    ]

    async def joined(room_id: str) -> frozenset[str] | None:
        return frozenset({"@alice:delegating.test"})

    # The OpenID check's own client: every *.test name is 127.0.0.1 here, so only the
    # allow-listed federation server may be reached (as a configured server would be).
    outbound = anonymous_callers_client(
        lambda: [f"fed.test:{servers.federation_port}"], timeout=5.0, resolver=StaticResolver()
    )
    service = AuthService(
        lambda: settings[0],
        session,
        logging.getLogger("rtcbot.test.discovery"),
        room_members=RoomMembers(joined),
        discovery=discovery(session, servers),
        outbound=outbound,
    )
    app = web.Application()
    for method, path, handler in service.routes():
        app.router.add_route(method, path, handler)

    def body(token: str, server: str = "delegating.test") -> dict[str, Any]:
        return {
            "room": ROOM,
            "device_id": "DEV",
            "openid_token": {
                "access_token": token,
                "token_type": "Bearer",
                "matrix_server_name": server,
                "expires_in": 3600,
            },
        }

    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.post("/sfu/get", json=body("good-token"))
        assert resp.status == 200, await resp.text()
        assert servers.userinfo_hosts == [f"fed.test:{servers.federation_port}"]
        assert (await client.post("/sfu/get", json=body("bad-token"))).status == 401
        # The same loopback server under a name nobody configured: refused before connecting.
        loopback = f"127.0.0.1:{servers.federation_port}"
        assert (await client.post("/sfu/get", json=body("good-token", loopback))).status == 401
        assert len(servers.userinfo_hosts) == 2  # the bad token's; nothing for the address

        # homeserver_urls still overrides discovery.
        settings[0] = replace(
            settings[0], homeserver_urls={"delegating.test": "http://127.0.0.1:1"}
        )
        assert (await client.post("/sfu/get", json=body("good-token"))).status == 401
        assert len(servers.userinfo_hosts) == 2
    await outbound.close()
