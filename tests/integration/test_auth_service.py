"""The MatrixRTC authorization service served by the plugin, with real OpenID tokens from
Synapse and the real LiveKit server accepting the JWTs it signs."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from mautrix.api import Method, Path

from rtcbot.rtc.identity import decode_jwt_claims, livekit_identity, livekit_room_alias
from rtcbot_stack.stack import Stack
from tests.stack.matrix_user import MatrixUser
from tests.stack.peers import Peer

pytestmark = pytest.mark.stack


async def openid(user: MatrixUser) -> dict[str, Any]:
    path = Path.v3.user[user.user_id].openid.request_token
    return dict(await user.request(Method.POST, path, {}))


async def post(url: str, body: Any) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.post(url, json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_synapse_advertises_the_service(stack: Stack, alice: MatrixUser) -> None:
    path = Path.unstable["org.matrix.msc4143"].rtc.transports
    resp = await alice.request(Method.GET, path)
    assert resp["rtc_transports"][0]["livekit_service_url"] == stack.auth_service_url
    async with aiohttp.ClientSession() as s, s.get(f"{stack.auth_service_url}/healthz") as r:
        assert r.status == 200


async def test_get_token_with_real_openid_and_livekit_accepts_it(
    stack: Stack, alice: MatrixUser, bot_room: str
) -> None:
    token = await openid(alice)
    status, resp = await post(
        f"{stack.auth_service_url}/get_token",
        {
            "room_id": bot_room,
            "slot_id": "m.call#ROOM",
            "openid_token": token,
            "member": {
                "id": "member1",
                "claimed_user_id": alice.user_id,
                "claimed_device_id": alice.device_id,
            },
        },
    )
    assert status == 200, resp
    claims = decode_jwt_claims(resp["jwt"])
    assert claims["sub"] == livekit_identity(alice.user_id, alice.device_id, "member1")
    assert claims["video"]["room"] == livekit_room_alias(bot_room, "m.call#ROOM")

    peer = Peer("alice")
    try:
        await peer.connect(resp["url"], resp["jwt"])  # LiveKit accepts the JWT
        assert peer.room.isconnected()
        assert peer.room.local_participant.identity == claims["sub"]
    finally:
        await peer.close()


async def test_sfu_get_legacy_endpoint(stack: Stack, alice: MatrixUser, bot_room: str) -> None:
    status, resp = await post(
        f"{stack.auth_service_url}/sfu/get",
        {
            "room": bot_room,
            "openid_token": await openid(alice),
            "device_id": alice.device_id,
        },
    )
    assert status == 200, resp
    claims = decode_jwt_claims(resp["jwt"])
    assert claims["sub"] == f"{alice.user_id}:{alice.device_id}"
    peer = Peer("alice-legacy")
    try:
        await peer.connect(resp["url"], resp["jwt"])
        assert peer.room.isconnected()
    finally:
        await peer.close()


async def test_forged_openid_and_unknown_fields_are_refused(
    stack: Stack, alice: MatrixUser, bot_room: str
) -> None:
    token = await openid(alice)
    forged = {**token, "access_token": "forged" + token["access_token"][6:]}
    status, resp = await post(
        f"{stack.auth_service_url}/sfu/get",
        {
            "room": bot_room,
            "openid_token": forged,
            "device_id": alice.device_id,
        },
    )
    assert status == 401 and resp["errcode"] == "M_UNAUTHORIZED"

    status, resp = await post(
        f"{stack.auth_service_url}/sfu/get",
        {
            "room": bot_room,
            "openid_token": token,
            "device_id": alice.device_id,
            "colour": "red",
        },
    )
    assert status == 400 and "colour" in resp["error"]
