"""Nothing an anonymous caller triggers shares the Matrix client's connections (review H1).

The web endpoints run with a Matrix client session of ONE connection and a real aiohttp
server on 127.0.0.1 standing in for the homeserver (userinfo, joined members, versions) and
for LiveKit, whose CreateRoom never answers while the test holds it. A full-access caller's
/sfu/get then waits on CreateRoom; /health, which probes the homeserver through the Matrix
client's session, must still find it reachable.
"""

from __future__ import annotations

import asyncio
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

from rtcbot.config import AuthServiceSettings, Settings
from rtcbot.context import BotContext
from rtcbot.web import WebEndpoints

TOKEN = "alice-openid-token-5e7d1c"
ROOM = "!call:hs.test"


@dataclass
class StandIn:
    """The homeserver and LiveKit on one loopback server; CreateRoom waits for `release`."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    create_room_started: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def userinfo(self, request: web.Request) -> web.Response:
        if request.query.get("access_token") != TOKEN:
            return web.json_response({"errcode": "M_UNKNOWN_TOKEN"}, status=401)
        return web.json_response({"sub": "@alice:hs.test"})

    async def versions(self, _request: web.Request) -> web.Response:
        return web.json_response({"versions": ["v1.11"]})

    async def create_room(self, request: web.Request) -> web.Response:
        await request.read()
        self.create_room_started.set()
        await self.release.wait()  # a LiveKit that accepts and does not answer
        return web.Response(body=b"", content_type="application/protobuf")


@pytest.fixture
async def stand_in() -> AsyncIterator[StandIn]:
    s = StandIn()
    app = web.Application()
    app.router.add_get("/_matrix/federation/v1/openid/userinfo", s.userinfo)
    app.router.add_get("/_matrix/client/versions", s.versions)
    app.router.add_post("/twirp/livekit.RoomService/CreateRoom", s.create_room)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    s.url = str(server.make_url("")).rstrip("/")
    yield s
    s.release.set()
    await server.close()


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

    # The Matrix client's session with a single connection: whatever holds it stalls the bot.
    matrix_http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
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
        await asyncio.wait_for(stand_in.create_room_started.wait(), 10)
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
