"""/health on a real aiohttp server standing in for the homeserver: anonymous callers share
one probe every few seconds instead of making the bot probe per request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from rtcbot.auth.web import WebEndpoints
from rtcbot.context import BotContext
from rtcbot.settings import Settings


@pytest.fixture
async def homeserver() -> AsyncIterator[tuple[TestServer, list[str]]]:
    probes: list[str] = []

    async def versions(request: web.Request) -> web.Response:
        probes.append(request.path)
        return web.json_response({"versions": ["v1.11"]})

    app = web.Application()
    app.router.add_get("/_matrix/client/versions", versions)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server, probes
    await server.close()


async def test_health_probes_once_for_many_callers(
    homeserver: tuple[TestServer, list[str]],
) -> None:
    server, probes = homeserver
    async with aiohttp.ClientSession() as http:
        client = SimpleNamespace(
            mxid="@bot:hs.test",
            api=SimpleNamespace(base_url=URL(str(server.make_url("")))),
            crypto=object(),  # E2EE on: the answer depends on the probes alone
        )
        ctx = SimpleNamespace(
            client=client,
            http=http,
            user_id="@bot:hs.test",
            settings=Settings,
            logger=lambda name: logging.getLogger(f"rtcbot.test.{name}"),
        )
        endpoints = WebEndpoints(cast(BotContext, ctx), list, list)
        request = cast(Any, None)
        answers = await asyncio.gather(*(endpoints.health(request) for _ in range(20)))
        answers.append(await endpoints.health(request))
        assert {a.status for a in answers} == {200}
        assert probes == ["/_matrix/client/versions"]  # one probe for all 21 callers
        await endpoints.close()
