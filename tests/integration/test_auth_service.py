"""The MatrixRTC authorization service served by the plugin, with real OpenID tokens from
Synapse and the real LiveKit server accepting the JWTs it signs.

Least privilege: tokens only for members of rooms the bot is in, subscribe-only tokens for
users of homeservers without full access (config changed through maubot's API, restored)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
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


def get_token_body(room_id: str, user: MatrixUser, token: dict[str, Any]) -> dict[str, Any]:
    return {
        "room_id": room_id,
        "slot_id": "m.call#ROOM",
        "openid_token": token,
        "member": {
            "id": f"member-{user.device_id}",
            "claimed_user_id": user.user_id,
            "claimed_device_id": user.device_id,
        },
    }


@contextmanager
def auth_config(stack: Stack, bot_id: str, **auth: Any) -> Iterator[None]:
    """The stack's plugin config with these auth_service keys (None: key removed)."""
    cfg = stack.plugin_config()
    for key, value in auth.items():
        if value is None:
            cfg["auth_service"].pop(key, None)
        else:
            cfg["auth_service"][key] = value
    stack.maubot.put_instance("rtcbot", "dev.rtcbot", bot_id, json.dumps(cfg))
    try:
        yield
    finally:
        stack.maubot.put_instance(
            "rtcbot", "dev.rtcbot", bot_id, json.dumps(stack.plugin_config())
        )


async def test_only_members_of_the_room_get_a_token(
    stack: Stack, alice: MatrixUser, bot_room: str, make_user: Any
) -> None:
    bob = await make_user("bob")
    bob_token = await openid(bob)
    log = stack.maubot.child.log_path
    offset = log.stat().st_size

    for path, body in [
        ("/get_token", get_token_body(bot_room, bob, bob_token)),
        ("/sfu/get", {"room": bot_room, "openid_token": bob_token, "device_id": bob.device_id}),
    ]:
        async with (
            aiohttp.ClientSession() as s,
            s.post(stack.auth_service_url + path, json=body) as r,
        ):
            assert r.status == 403, path
            assert await r.json() == {
                "errcode": "M_FORBIDDEN",
                "error": "The requesting user is not a member of the room",
            }
            assert r.headers["Access-Control-Allow-Origin"] == "*"

    # Once bob has joined, he gets one: a refusal is served from the cache for 2 s at most
    # (room_members.DEFAULT_REFUSAL_TTL), so ask until a deadline well past that.
    await alice.invite(bot_room, bob.user_id)
    await bob.join(bot_room)
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        status, resp = await post(
            f"{stack.auth_service_url}/get_token", get_token_body(bot_room, bob, bob_token)
        )
        if status != 403 or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.25)
    assert status == 200, resp
    assert decode_jwt_claims(resp["jwt"])["video"]["canPublish"] is True  # "*" in the stack

    written = log.read_bytes()[offset:].decode("utf-8", "replace")
    assert f"{bob.user_id} is not joined to {bot_room}" in written
    assert bob_token["access_token"] not in written and resp["jwt"] not in written


async def test_rooms_without_the_bot_are_refused_by_default(
    stack: Stack, alice: MatrixUser
) -> None:
    room = await alice.create_room()  # the bot is not invited
    status, resp = await post(
        f"{stack.auth_service_url}/get_token", get_token_body(room, alice, await openid(alice))
    )
    assert status == 403 and resp["errcode"] == "M_FORBIDDEN", resp
    assert "invite the bot" in resp["error"]


async def test_restricted_users_only_subscribe(
    stack: Stack, alice: MatrixUser, bot_room: str, bot_id: str
) -> None:
    token = await openid(alice)
    with auth_config(stack, bot_id, full_access_homeservers=["other.example"]):
        status, resp = await post(
            f"{stack.auth_service_url}/get_token", get_token_body(bot_room, alice, token)
        )
    assert status == 200, resp
    video = decode_jwt_claims(resp["jwt"])["video"]
    assert video["canPublish"] is False and video["canPublishData"] is False
    assert video["canSubscribe"] is True and video["roomJoin"] is True

    # LiveKit agrees: the restricted participant may not publish.
    peer = Peer("restricted")
    try:
        await peer.connect(resp["url"], resp["jwt"])
        assert peer.room.local_participant.permissions.can_publish is False
        assert peer.room.local_participant.permissions.can_subscribe is True
    finally:
        await peer.close()


async def test_by_default_the_bots_own_homeserver_has_full_access(
    stack: Stack, alice: MatrixUser, bot_room: str, bot_id: str
) -> None:
    token = await openid(alice)
    with auth_config(stack, bot_id, full_access_homeservers=None):
        status, resp = await post(
            f"{stack.auth_service_url}/get_token", get_token_body(bot_room, alice, token)
        )
    assert status == 200, resp
    assert decode_jwt_claims(resp["jwt"])["video"]["canPublish"] is True
