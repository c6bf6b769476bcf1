"""A call member's service that the bot uses as its main one never holds the Matrix client's
connections.

The bot has no service of its own (no `livekit.service_url`, no API secret, the homeserver
advertises none) and takes the allow-listed service a call member advertises. That service
is chosen by room state, so it is asked through the guarded client (net/outbound.py), like
other SFUs' services. Here the Matrix client's session has ONE connection and the member's
service (a real aiohttp server on 127.0.0.1) accepts /sfu/get and does not answer: a request
of the bot to its homeserver through the Matrix client's session must still get through.
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
from aiohttp.test_utils import TestServer

from rtcbot.config import LiveKitSettings, Settings
from rtcbot.context import BotContext
from rtcbot.media_roles import MediaRoles
from rtcbot.ports import CallMembership

ROOM = "!call:hs.test"


@dataclass
class StandIn:
    """The homeserver's versions endpoint and the member's service; /sfu/get waits."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    asked: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def versions(self, _request: web.Request) -> web.Response:
        return web.json_response({"versions": ["v1.11"]})

    async def sfu_get(self, request: web.Request) -> web.Response:
        await request.read()
        self.asked.set()
        await self.release.wait()  # a service that accepts and does not answer
        return web.json_response({"errcode": "M_UNKNOWN"}, status=503)


@pytest.fixture
async def stand_in() -> AsyncIterator[StandIn]:
    s = StandIn()
    app = web.Application()
    app.router.add_get("/_matrix/client/versions", s.versions)
    app.router.add_post("/svc/sfu/get", s.sfu_get)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    s.url = str(server.make_url("")).rstrip("/")
    yield s
    s.release.set()
    await server.close()


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

    async def no_transport() -> str:
        return ""

    member = SimpleNamespace(
        since_ms=1,
        transports=[SimpleNamespace(type="livekit", livekit_service_url=service)],
    )
    call = SimpleNamespace(members={"alice": member})

    async def room(_room_id: str) -> Any:
        return SimpleNamespace(call=lambda: call)

    # The Matrix client's session with a single connection: whatever holds it stalls the bot.
    matrix_http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
    ctx = SimpleNamespace(
        client=SimpleNamespace(api=SimpleNamespace(request=openid)),
        http=matrix_http,
        user_id="@bot:hs.test",
        device_id="BOTDEVICE",
        settings=lambda: settings,
        logger=lambda name: logging.getLogger(f"rtcbot.test.{name}"),
    )
    roles = MediaRoles(
        cast(BotContext, ctx), cast(CallMembership, SimpleNamespace(room=room)), no_transport
    )
    access = asyncio.create_task(roles.access(ROOM, frozenset({"record"}), "Recorder"))
    try:
        await asyncio.wait_for(stand_in.asked.wait(), 10)
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
