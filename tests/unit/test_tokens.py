"""SFU access: local least-privilege minting, the auth-service client, and the token cache."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from livekit import api
from livekit.api.access_token import Claims
from livekit.protocol import models

from rtcbot.media.failure_sentences import room_sentence
from rtcbot.media.livekit_settings import LiveKitSettings
from rtcbot.media.tokens import (
    AuthServiceClient,
    Role,
    SfuAccess,
    SfuAuthError,
    access_from_jwt,
    grants_for,
    mint_local_token,
    participant_name,
    permission_for,
)
from rtcbot.net.outbound import AddressPolicy, GuardedClient
from rtcbot.rtc.identity import (
    legacy_identity,
    livekit_identity,
    livekit_room_alias,
    member_identity,
)

KEY = "unit-test-key"
SECRET = "unit-test-secret-0123456789abcdef0123456789"  # ≥ 32 bytes: no PyJWT key warning
LK = LiveKitSettings(url="ws://127.0.0.1:7880", api_key=KEY, api_secret=SECRET)
OPENID: dict[str, Any] = {
    "access_token": "openid-secret-abcdef123456",
    "token_type": "Bearer",
    "matrix_server_name": "hs.test",
    "expires_in": 3600,
}


def _verify(jwt: str) -> Claims:
    return api.TokenVerifier(KEY, SECRET).verify(jwt)


# -- local minting ---------------------------------------------------------------------------
def test_recorder_token_subscribes_and_publishes_only_its_status_picture() -> None:
    before = time.time()
    access = mint_local_token(LK, "room-a", "rtcbot-recorder", "recorder")
    claims = _verify(access.jwt)
    assert claims.identity == "rtcbot-recorder"
    video = claims.video
    assert video is not None
    assert video.room == "room-a" and video.room_join is True
    assert video.can_subscribe is True
    # Visible (clients show the bot's tile), publishing only the "● Recording" picture.
    assert video.can_publish is True and video.can_publish_sources == ["camera"]
    assert video.can_publish_data is False
    assert video.hidden is False
    assert video.recorder is True
    assert not video.room_create and not video.room_admin and not video.can_update_own_metadata
    assert access.via == "local" and access.url == LK.url
    assert access.room == "room-a" and access.identity == "rtcbot-recorder"
    assert before + 600 - 2 <= access.expires_at <= time.time() + 600 + 2


def test_announcer_token_publishes_microphone_and_picture_and_does_not_subscribe() -> None:
    access = mint_local_token(LK, "room-b", "rtcbot-announcer", "announcer", name="Announcer")
    claims = _verify(access.jwt)
    video = claims.video
    assert video is not None
    assert video.room == "room-b" and video.room_join is True
    assert video.can_publish is True
    assert video.can_publish_sources == ["camera", "microphone"]
    assert video.can_subscribe is False
    assert video.can_publish_data is False
    assert not video.hidden and not video.recorder
    assert not video.room_create and not video.room_admin and not video.can_update_own_metadata
    assert claims.name == "Announcer"


def test_both_roles_get_the_union_and_nothing_more() -> None:
    access = mint_local_token(
        LK, "room-c", "@bot:hs:DEV", ["recorder", "announcer"], name="bot (recording)"
    )
    video = _verify(access.jwt).video
    assert video is not None
    assert video.can_subscribe is True and video.recorder is True
    assert video.can_publish is True
    assert video.can_publish_sources == ["camera", "microphone"]
    assert not video.can_publish_data and not video.hidden and not video.can_update_own_metadata
    assert not video.room_create and not video.room_admin


@pytest.mark.parametrize(
    ("roles", "subscribe", "sources", "recorder"),
    [
        (["recorder"], True, [models.TrackSource.CAMERA], True),
        (["announcer"], False, [models.TrackSource.CAMERA, models.TrackSource.MICROPHONE], False),
        (
            ["announcer", "recorder"],
            True,
            [models.TrackSource.CAMERA, models.TrackSource.MICROPHONE],
            True,
        ),
    ],
)
def test_live_permission_matches_the_token_grants(
    roles: list[Role], subscribe: bool, sources: list[int], recorder: bool
) -> None:
    perm = permission_for(roles)
    assert perm.can_subscribe is subscribe and perm.recorder is recorder
    assert perm.can_publish is True and list(perm.can_publish_sources) == sources
    assert not perm.can_publish_data and not perm.hidden and not perm.can_update_metadata
    # The same as what a token for these roles grants (what LiveKit compares).
    grants = grants_for(roles, "r")
    assert grants.can_subscribe == perm.can_subscribe and grants.recorder == perm.recorder


def test_participant_names_say_what_the_bot_does() -> None:
    assert participant_name("rtcbot", ["recorder"]) == "rtcbot (recording)"
    assert participant_name("rtcbot", ["announcer", "recorder"]) == "rtcbot (recording)"
    assert participant_name("rtcbot", ["announcer"]) == "rtcbot (announcer)"
    assert participant_name("rtcbot", []) == "rtcbot"


def test_local_token_ttl() -> None:
    access = mint_local_token(LK, "r", "i", "recorder", ttl=timedelta(minutes=2))
    raw = api.TokenVerifier(KEY, SECRET)
    assert raw.verify(access.jwt)  # still valid
    from rtcbot.rtc.identity import decode_jwt_claims

    claims = decode_jwt_claims(access.jwt)
    assert claims["exp"] - claims["nbf"] == 120
    assert access.expires_at == float(claims["exp"])


def test_local_token_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="role"):
        mint_local_token(LK, "r", "i", "admin")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="role"):
        mint_local_token(LK, "r", "i", [])
    with pytest.raises(ValueError, match="api_secret"):
        mint_local_token(LiveKitSettings(url="ws://x", api_key=KEY), "r", "i", "recorder")
    with pytest.raises(ValueError, match="room"):
        mint_local_token(LK, "", "i", "recorder")
    with pytest.raises(ValueError, match="positive"):
        mint_local_token(LK, "r", "i", "recorder", ttl=timedelta(0))


def test_sfu_access_repr_hides_jwt() -> None:
    access = mint_local_token(LK, "room-a", "me", "recorder")
    assert access.jwt not in repr(access)
    assert "room-a" in repr(access)


def test_access_from_jwt_requires_room_and_identity() -> None:
    no_room = api.AccessToken(KEY, SECRET).with_identity("x").to_jwt()
    with pytest.raises(ValueError, match=r"video\.room"):
        access_from_jwt("ws://x", no_room, "get_token")


# -- auth service client against a scripted service ------------------------------------------
@dataclass
class ScriptedService:
    """Plays an authorization service; `answers` maps path → (status, body or raw text)."""

    answers: dict[str, tuple[int, Any]] = field(default_factory=dict)
    requests: list[tuple[str, Any]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((request.path, body))
        status, answer = self.answers.get(request.path, (404, {"errcode": "M_NOT_FOUND"}))
        if isinstance(answer, str):
            return web.Response(status=status, text=answer)
        return web.json_response(answer, status=status)


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedService]:
    svc = ScriptedService()
    app = web.Application()
    app.router.add_post("/get_token", svc.handle)
    app.router.add_post("/sfu/get", svc.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    svc.url = str(server.make_url("")).rstrip("/")
    yield svc
    await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _service_jwt(room: str, identity: str) -> str:
    return (
        api.AccessToken(KEY, SECRET)
        .with_identity(identity)
        .with_ttl(timedelta(hours=1))
        .with_grants(api.VideoGrants(room_join=True, room=room))
        .to_jwt()
    )


async def _get(client: AuthServiceClient, url: str, **extra: Any) -> SfuAccess:
    return await client.get_access(
        url, "!room:hs.test", {**OPENID, **extra}, "@bot:hs.test", "BOTDEV", "member-1"
    )


async def test_client_get_token(scripted: ScriptedService, session: aiohttp.ClientSession) -> None:
    room = livekit_room_alias("!room:hs.test")
    identity = livekit_identity("@bot:hs.test", "BOTDEV", "member-1")
    jwt = _service_jwt(room, identity)
    scripted.answers["/get_token"] = (200, {"url": "wss://sfu.test", "jwt": jwt})
    access = await _get(AuthServiceClient(session), scripted.url + "/", unexpected="x")
    assert access.via == "get_token" and access.url == "wss://sfu.test" and access.jwt == jwt
    assert access.room == room and access.identity == identity
    assert abs(access.expires_at - (time.time() + 3600)) < 5
    path, body = scripted.requests[0]
    assert path == "/get_token"
    assert body == {
        "room_id": "!room:hs.test",
        "slot_id": "m.call#ROOM",
        "openid_token": OPENID,  # the unknown extra key was not forwarded
        "member": {
            "id": "member-1",
            "claimed_user_id": "@bot:hs.test",
            "claimed_device_id": "BOTDEV",
        },
    }


async def test_client_falls_back_to_sfu_get(
    scripted: ScriptedService, session: aiohttp.ClientSession
) -> None:
    # An old-scheme service: room and identity are whatever the token says.
    jwt = _service_jwt("!room:hs.test", legacy_identity("@bot:hs.test", "BOTDEV"))
    scripted.answers["/sfu/get"] = (200, {"url": "wss://sfu.test", "jwt": jwt})
    access = await _get(AuthServiceClient(session), scripted.url)
    assert access.via == "sfu_get"
    assert access.room == "!room:hs.test" and access.identity == "@bot:hs.test:BOTDEV"
    assert [p for p, _ in scripted.requests] == ["/get_token", "/sfu/get"]
    assert scripted.requests[1][1] == {
        "room": "!room:hs.test",
        "openid_token": OPENID,
        "device_id": "BOTDEV",
    }


async def test_client_prefers_sfu_get_for_a_state_membership(
    scripted: ScriptedService, session: aiohttp.ClientSession
) -> None:
    """The bot's own membership is a state event: it asks /sfu/get first, for the identity
    that clients match against that membership, and /get_token only if /sfu/get is gone."""
    identity = member_identity("@bot:hs.test", "BOTDEV")
    assert identity == "@bot:hs.test:BOTDEV"
    jwt = _service_jwt(livekit_room_alias("!room:hs.test"), identity)
    scripted.answers["/sfu/get"] = (200, {"url": "wss://sfu.test", "jwt": jwt})
    client = AuthServiceClient(session)
    access = await client.get_access(
        scripted.url, "!room:hs.test", OPENID, "@bot:hs.test", "BOTDEV", identity,
        prefer="sfu_get",
    )  # fmt: skip
    assert access.via == "sfu_get" and access.identity == identity
    assert [p for p, _ in scripted.requests] == ["/sfu/get"]

    del scripted.answers["/sfu/get"]
    hashed = member_identity("@bot:hs.test", "BOTDEV", identity)
    assert hashed == livekit_identity("@bot:hs.test", "BOTDEV", identity)
    scripted.answers["/get_token"] = (
        200,
        {"url": "wss://sfu.test", "jwt": _service_jwt("r", hashed)},
    )
    access = await client.get_access(
        scripted.url, "!room:hs.test", OPENID, "@bot:hs.test", "BOTDEV", identity,
        prefer="sfu_get",
    )  # fmt: skip
    assert access.via == "get_token" and access.identity == hashed
    assert [p for p, _ in scripted.requests][1:] == ["/sfu/get", "/get_token"]
    assert scripted.requests[-1][1]["member"]["id"] == identity


@pytest.mark.parametrize(
    ("status", "answer", "kind"),
    [
        (
            401,
            {"errcode": "M_UNAUTHORIZED", "error": "The request could not be authorised."},
            "unauthorised",
        ),
        (403, {"errcode": "M_FORBIDDEN", "error": "no"}, "unauthorised"),
        (400, {"errcode": "M_BAD_JSON", "error": "missing member"}, "bad_request"),
        (500, {"errcode": "M_UNKNOWN", "error": "Unable to create room on SFU"}, "server_error"),
        (502, "<html>Bad Gateway</html>", "server_error"),
        (200, {"url": "wss://x"}, "bad_response"),
        (200, {"url": "wss://x", "jwt": "garbage"}, "bad_response"),
        (200, "not json", "bad_response"),
    ],
)
async def test_client_error_kinds(
    scripted: ScriptedService,
    session: aiohttp.ClientSession,
    status: int,
    answer: Any,
    kind: str,
) -> None:
    scripted.answers["/get_token"] = (status, answer)
    with pytest.raises(SfuAuthError) as info:
        await _get(AuthServiceClient(session), scripted.url)
    err = info.value
    assert err.kind == kind and err.status == status
    assert err.message.endswith(".") and len(err.message) > 40
    assert OPENID["access_token"] not in str(err) and "garbage" not in str(err)
    if isinstance(answer, dict) and "errcode" in answer:
        assert answer["errcode"] in err.message and err.errcode == answer["errcode"]
    # The room gets a fixed sentence: nothing the service said, not its address.
    said = room_sentence(err)
    for quoted in (scripted.url, "127.0.0.1", "get_token", *_texts(answer)):
        assert quoted not in said, (quoted, said)


def _texts(answer: Any) -> list[str]:
    return [str(v) for v in answer.values()] if isinstance(answer, dict) else [str(answer)]


async def test_client_through_the_guarded_client(scripted: ScriptedService) -> None:
    """Another SFU's service is asked through net/outbound.py: a loopback service is
    reached only when its host is a listed one; otherwise no request is made."""
    scripted.answers["/get_token"] = (403, {"errcode": "M_FORBIDDEN", "error": "no"})
    refusing = GuardedClient(AddressPolicy())
    listed = GuardedClient(AddressPolicy(local_hosts=lambda: {"127.0.0.1"}))
    try:
        with pytest.raises(SfuAuthError) as info:
            await _get(AuthServiceClient(refusing), scripted.url)
        assert info.value.kind == "unreachable" and "not contacted" in info.value.message
        assert scripted.requests == []
        with pytest.raises(SfuAuthError) as info:
            await _get(AuthServiceClient(listed), scripted.url)
        assert info.value.kind == "unauthorised"
        assert [p for p, _ in scripted.requests] == ["/get_token"]
    finally:
        await refusing.close()
        await listed.close()


async def test_client_both_endpoints_missing(
    scripted: ScriptedService, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(SfuAuthError) as info:
        await _get(AuthServiceClient(session), scripted.url)
    assert info.value.kind == "not_found" and "prefix" in info.value.message


async def test_client_unreachable(session: aiohttp.ClientSession) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SfuAuthError) as info:
        await _get(AuthServiceClient(session, timeout=5), f"http://127.0.0.1:{port}")
    assert info.value.kind == "unreachable" and info.value.status is None
    assert info.value.retryable


async def test_client_scrubs_echoed_secrets(
    scripted: ScriptedService, session: aiohttp.ClientSession
) -> None:
    # A careless service that quotes the request back must not leak the OpenID token.
    scripted.answers["/get_token"] = (
        400,
        {"errcode": "M_BAD_JSON", "error": json.dumps(OPENID)},
    )
    with pytest.raises(SfuAuthError) as info:
        await _get(AuthServiceClient(session), scripted.url)
    assert OPENID["access_token"] not in info.value.message
    assert "[redacted]" in info.value.message
