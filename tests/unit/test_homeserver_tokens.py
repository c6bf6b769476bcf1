"""rtcbot's service as an MSC4512 application service (auth/homeserver_tokens.py), attacked
from the outside: whoever reaches the plugin's web endpoint directly (not through Synapse)
gets nothing without the hs_token; with it, the same room checks as the OpenID endpoints,
only this service's SFU, only its own homeserver's users. Real aiohttp, a fake room list."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from rtcbot.auth.homeserver_tokens import HomeserverTokens
from rtcbot.auth.service import AuthService
from rtcbot.auth.settings import AuthServiceSettings
from rtcbot.matrix.room_members import RoomMembers
from rtcbot.rtc.identity import (
    decode_jwt_claims,
    legacy_identity,
    livekit_identity,
    livekit_room_alias,
)

HS_TOKEN = "hs-token-0123456789abcdef0123456789abcdef"
SFU = "ws://127.0.0.1:7880"
ROOM = "!call:own.test"
PATH = "/_matrix/client/unstable/io.element.msc4195/rtc/livekit/get_token"
ALICE = "@alice:own.test"


@pytest.fixture
async def client() -> AsyncIterator[tuple[TestClient, list[AuthServiceSettings]]]:
    settings = [
        AuthServiceSettings(
            enabled=True,
            livekit_url=SFU,
            api_key="key",
            api_secret="secret-0123456789abcdef0123456789abcdef",
            appservice_hs_token=HS_TOKEN,
            full_access_homeservers=("other.test",),  # restricted: no CreateRoom needed
        )
    ]

    async def fetch(room_id: str) -> frozenset[str] | None:
        return frozenset({ALICE, "@bot:own.test"}) if room_id == ROOM else None

    async with aiohttp.ClientSession() as session:
        service = AuthService(
            lambda: settings[0],
            session,
            logging.getLogger("rtcbot.test.hs_tokens"),
            own_server="own.test",
            room_members=RoomMembers(fetch),
        )
        tokens = HomeserverTokens(service, "own.test")
        app = web.Application()
        for method, path, handler in tokens.routes():
            app.router.add_route(method, path, handler)
        test_client = TestClient(TestServer(app, host="127.0.0.1"))
        await test_client.start_server()
        try:
            yield test_client, settings
        finally:
            await test_client.close()
            await service.close()


def body(**over: Any) -> dict[str, Any]:
    # js-sdk 43 LivekitGetTokenRequest, field by field.
    found: dict[str, Any] = {
        "url": SFU,
        "room_id": ROOM,
        "slot_id": "m.call#ROOM",
        "member": {"id": "member-1", "claimed_device_id": "ALICEDEV"},
    }
    found.update(over)
    return found


async def post(
    client: TestClient, payload: Any, token: str | None = HS_TOKEN, user: str | None = ALICE
) -> tuple[int, dict[str, Any]]:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if user is not None:
        headers["X-Matrix-User-Identifier"] = user
    resp = await client.post(PATH, json=payload, headers=headers)
    return resp.status, await resp.json()


async def test_synapses_request_gets_a_token_for_the_members_identity(client: Any) -> None:
    c, _ = client
    status, answer = await post(c, body())
    assert status == 200, answer
    claims = decode_jwt_claims(answer["jwt"])
    assert claims["sub"] == livekit_identity(ALICE, "ALICEDEV", "member-1")
    assert claims["video"]["room"] == livekit_room_alias(ROOM, "m.call#ROOM")
    assert claims["video"].get("canPublish") is False  # restricted here: listen only
    # A session membership (member id `user:device`) gets what every client matches it by.
    status, answer = await post(
        c, body(member={"id": f"{ALICE}:ALICEDEV", "claimed_device_id": "ALICEDEV"})
    )
    assert decode_jwt_claims(answer["jwt"])["sub"] == legacy_identity(ALICE, "ALICEDEV")


@pytest.mark.parametrize(
    ("token", "user", "status", "errcode"),
    [
        (None, ALICE, 401, "M_UNKNOWN_TOKEN"),  # someone calling the plugin directly
        ("wrong", ALICE, 401, "M_UNKNOWN_TOKEN"),
        (HS_TOKEN + "x", ALICE, 401, "M_UNKNOWN_TOKEN"),
        (HS_TOKEN, None, 400, "M_BAD_JSON"),
        (HS_TOKEN, "not a user", 400, "M_BAD_JSON"),
    ],
)
async def test_only_synapse_may_call(
    client: Any, token: str | None, user: str | None, status: int, errcode: str
) -> None:
    c, _ = client
    got, answer = await post(c, body(), token=token, user=user)
    assert (got, answer["errcode"]) == (status, errcode), answer
    assert "jwt" not in answer


async def test_without_an_hs_token_configured_nothing_answers(client: Any) -> None:
    c, settings = client
    settings[0] = replace(settings[0], appservice_hs_token="")
    for token in (HS_TOKEN, "", None):
        got, answer = await post(c, body(), token=token)
        assert (got, answer["errcode"]) == (404, "M_UNRECOGNIZED"), answer


@pytest.mark.parametrize(
    ("over", "status", "errcode"),
    [
        ({"url": "ws://elsewhere.example:7880"}, 400, "M_INVALID_PARAM"),  # not our SFU
        ({"server_name": "other.test"}, 400, "M_INVALID_PARAM"),  # no federation
        ({"room_id": "!nobot:own.test"}, 403, "M_FORBIDDEN"),  # the bot is not there
        ({"url": "https://sfu.example"}, 400, "M_BAD_JSON"),
        ({"member": {"claimed_device_id": "D"}}, 400, "M_BAD_JSON"),
        ({"extra": 1}, 400, "M_BAD_JSON"),
    ],
)
async def test_refusals(client: Any, over: dict[str, Any], status: int, errcode: str) -> None:
    c, _ = client
    got, answer = await post(c, body(**over))
    assert (got, answer["errcode"]) == (status, errcode), answer


async def test_a_non_member_of_the_room_is_refused(client: Any) -> None:
    c, _ = client
    got, answer = await post(c, body(), user="@mallory:own.test")
    assert (got, answer["errcode"]) == (403, "M_FORBIDDEN"), answer
