"""Nothing untrusted holds the Matrix client's connections (review H1).

Each test runs with a Matrix client session of ONE connection and a real aiohttp server on
127.0.0.1 standing in for the homeserver (userinfo, versions) and for what an untrusted party
makes the bot ask: LiveKit's CreateRoom (an anonymous caller's /sfu/get) or a call member's
authorization service (the bot has none of its own and takes the allow-listed one a member
advertises). Those accept and do not answer while the test holds them; a request of the bot
to its homeserver through the Matrix client's session must still get through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from rtcbot.auth.settings import AuthServiceSettings
from rtcbot.auth.web import WebEndpoints
from rtcbot.context import BotContext
from rtcbot.media.livekit_settings import LiveKitSettings
from rtcbot.metrics import Metrics
from rtcbot.ports import CallMembership
from rtcbot.recording.access import MediaAccess
from rtcbot.settings import Settings

TOKEN = "alice-openid-token-5e7d1c"
ROOM = "!call:hs.test"


@dataclass
class StandIn:
    """The homeserver, LiveKit and a member's service on one loopback server; CreateRoom and
    the member's /sfu/get wait for `release`."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    held: asyncio.Event = field(default_factory=asyncio.Event)  # a request is being held
    url: str = ""

    async def userinfo(self, request: web.Request) -> web.Response:
        if request.query.get("access_token") != TOKEN:
            return web.json_response({"errcode": "M_UNKNOWN_TOKEN"}, status=401)
        return web.json_response({"sub": "@alice:hs.test"})

    async def versions(self, _request: web.Request) -> web.Response:
        return web.json_response({"versions": ["v1.11"]})

    async def create_room(self, request: web.Request) -> web.Response:
        await self._hold(request)
        return web.Response(body=b"", content_type="application/protobuf")

    async def sfu_get(self, request: web.Request) -> web.Response:
        await self._hold(request)
        return web.json_response({"errcode": "M_UNKNOWN"}, status=503)

    async def _hold(self, request: web.Request) -> None:
        await request.read()
        self.held.set()
        await self.release.wait()  # accepts and does not answer


@pytest.fixture
async def stand_in() -> AsyncIterator[StandIn]:
    s = StandIn()
    app = web.Application()
    app.router.add_get("/_matrix/federation/v1/openid/userinfo", s.userinfo)
    app.router.add_get("/_matrix/client/versions", s.versions)
    app.router.add_post("/twirp/livekit.RoomService/CreateRoom", s.create_room)
    app.router.add_post("/svc/sfu/get", s.sfu_get)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    s.url = str(server.make_url("")).rstrip("/")
    yield s
    s.release.set()
    await server.close()


def one_connection() -> aiohttp.ClientSession:
    """The Matrix client's session with a single connection: whatever holds it stalls the bot."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))


async def test_a_hanging_create_room_leaves_the_matrix_clients_connections_alone(
    stand_in: StandIn,
) -> None:
    settings = Settings(
        auth_service=AuthServiceSettings(
            enabled=True,
            livekit_url=stand_in.url.replace("http", "ws"),
            api_key="unit-key",
            api_secret="unit-secret-0123456789abcdef0123456789",
            full_access_homeservers=("hs.test",),
            homeserver_urls={"hs.test": stand_in.url},
        ),
    )

    async def joined_members(*_args: Any, **_kwargs: Any) -> dict[str, Any]:
        return {"joined": {"@alice:hs.test": {}, "@bot:hs.test": {}}}

    matrix_http = one_connection()
    client = SimpleNamespace(
        mxid="@bot:hs.test",
        api=SimpleNamespace(base_url=URL(stand_in.url), request=joined_members),
        crypto=object(),
    )
    ctx = SimpleNamespace(
        client=client,
        http=matrix_http,
        user_id="@bot:hs.test",
        settings=lambda: settings,
        logger=lambda name: logging.getLogger(f"rtcbot.test.{name}"),
        metrics=Metrics(),
    )
    endpoints = WebEndpoints(cast(BotContext, ctx), list, list)
    app = web.Application()
    endpoints.mount(app.router)
    caller = TestClient(TestServer(app, host="127.0.0.1"))
    await caller.start_server()
    try:
        body = {
            "room": ROOM,
            "device_id": "DEV",
            "openid_token": {
                "access_token": TOKEN,
                "token_type": "Bearer",
                "matrix_server_name": "hs.test",
                "expires_in": 3600,
            },
        }
        token_request = asyncio.create_task(caller.post("/sfu/get", json=body))
        await asyncio.wait_for(stand_in.held.wait(), 10)
        # CreateRoom is held open; the bot's own probe of its homeserver must still get through.
        health = await caller.get("/health")
        answer = await health.json()
        assert answer["homeserver"]["reachable"] is True, answer
        stand_in.release.set()
        resp = await token_request
        assert resp.status == 200, await resp.text()
    finally:
        stand_in.release.set()
        await caller.close()
        await endpoints.close()
        await matrix_http.close()


async def test_a_members_service_that_hangs_leaves_the_matrix_clients_connections_alone(
    stand_in: StandIn,
) -> None:
    service = f"{stand_in.url}/svc"
    settings = Settings(livekit=LiveKitSettings(trusted_services=(service,)))

    async def openid(*_args: Any, **_kwargs: Any) -> dict[str, Any]:
        return {
            "access_token": "bot-openid-token",
            "token_type": "Bearer",
            "matrix_server_name": "hs.test",
            "expires_in": 3600,
        }

    async def no_transport() -> None:
        return None

    member = SimpleNamespace(
        since_ms=1,
        transports=[SimpleNamespace(type="livekit", livekit_service_url=service)],
    )
    call = SimpleNamespace(members={"alice": member})

    async def room(_room_id: str) -> Any:
        return SimpleNamespace(call=lambda: call)

    matrix_http = one_connection()
    ctx = SimpleNamespace(
        client=SimpleNamespace(api=SimpleNamespace(request=openid)),
        http=matrix_http,
        user_id="@bot:hs.test",
        device_id="BOTDEVICE",
        settings=lambda: settings,
        logger=lambda name: logging.getLogger(f"rtcbot.test.{name}"),
    )
    roles = MediaAccess(
        cast(BotContext, ctx),
        cast(CallMembership, SimpleNamespace(room=room, publisher=lambda _room: None)),
        no_transport,
        lambda _room: None,
    )
    access = asyncio.create_task(roles.access(ROOM, frozenset({"record"}), "Recorder"))
    try:
        await asyncio.wait_for(stand_in.held.wait(), 10)
        # The member's service holds its request; the bot's homeserver must still be reachable.
        try:
            async with (
                asyncio.timeout(5),
                matrix_http.get(f"{stand_in.url}/_matrix/client/versions") as resp,
            ):
                assert resp.status == 200
        except TimeoutError:
            pytest.fail("the member's service holds the Matrix client's only connection")
    finally:
        stand_in.release.set()
        with contextlib.suppress(Exception):
            await access
        await roles.trust.close()
        await matrix_http.close()
