"""The built-in MatrixRTC authorization service, run in a real aiohttp app.

A tiny aiohttp server on 127.0.0.1 plays the homeserver's federation OpenID userinfo
endpoint and LiveKit's CreateRoom, so the validation logic runs against real HTTP. Who is
joined to which room comes from a fake `fetch` handed to the real RoomMembers cache.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from livekit import api

from rtcbot.auth.service import AuthService
from rtcbot.auth.settings import AuthServiceSettings
from rtcbot.config import ConfigError
from rtcbot.matrix.room_members import MembershipUnknown, RoomMembers
from rtcbot.media.tokens import AuthServiceClient
from rtcbot.net.own_token import note_sent
from rtcbot.rtc.identity import decode_jwt_claims, livekit_identity, livekit_room_alias
from rtcbot.settings import parse_settings

KEY = "unit-auth-key"
SECRET = "unit-auth-secret-0123456789abcdef0123456789"
LOGGER = "rtcbot.test.auth_service"
ALICE_TOKEN = "alice-openid-token-7f3a9c1e5b"
MALLORY_TOKEN = "mallory-openid-token-c0ffee"
ROOM = "!call:hs.test"
NO_BOT_ROOM = "!nobot:hs.test"


@dataclass
class FakeHomeserver:
    """Answers /_matrix/federation/v1/openid/userinfo like Synapse does."""

    users: dict[str, str] = field(default_factory=dict)  # access token → user id
    seen: list[str] = field(default_factory=list)
    created_rooms: list[bytes] = field(default_factory=list)  # LiveKit CreateRoom bodies
    url: str = ""

    async def userinfo(self, request: web.Request) -> web.Response:
        token = request.query.get("access_token", "")
        self.seen.append(token)
        if token not in self.users:
            return web.json_response(
                {"errcode": "M_UNKNOWN_TOKEN", "error": "Access Token unknown or expired"},
                status=401,
            )
        return web.json_response({"sub": self.users[token]})

    async def create_room(self, request: web.Request) -> web.Response:
        # LiveKit's twirp API: an empty protobuf body is a default Room.
        self.created_rooms.append(await request.read())
        return web.Response(body=b"", content_type="application/protobuf")


@dataclass
class FakeRooms:
    """Who the bot's homeserver says is joined; None = the bot is not in the room."""

    joined: dict[str, frozenset[str] | None] = field(default_factory=dict)
    fetched: list[str] = field(default_factory=list)
    failing: bool = False

    async def fetch(self, room_id: str) -> frozenset[str] | None:
        self.fetched.append(room_id)
        if self.failing:
            raise MembershipUnknown("502 MatrixRequestError")
        return self.joined.get(room_id)


@dataclass
class Harness:
    client: TestClient
    hs: FakeHomeserver
    settings: list[AuthServiceSettings]
    rooms: FakeRooms
    now: list[float]  # the membership cache's clock

    def configure(self, **changes: Any) -> None:
        self.settings[0] = replace(self.settings[0], **changes)

    async def post(self, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        kwargs = {"data": body} if isinstance(body, str | bytes) else {"json": body}
        resp = await self.client.post(path, **kwargs)
        return resp.status, await resp.json()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def homeserver() -> AsyncIterator[FakeHomeserver]:
    hs = FakeHomeserver(users={ALICE_TOKEN: "@alice:hs.test", MALLORY_TOKEN: "@mallory:evil.test"})
    app = web.Application()
    app.router.add_get("/_matrix/federation/v1/openid/userinfo", hs.userinfo)
    app.router.add_post("/twirp/livekit.RoomService/CreateRoom", hs.create_room)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    hs.url = str(server.make_url("")).rstrip("/")
    yield hs
    await server.close()


@pytest.fixture
async def harness(homeserver: FakeHomeserver) -> AsyncIterator[Harness]:
    settings = [
        AuthServiceSettings(
            enabled=True,
            livekit_url="ws://127.0.0.1:7880",
            api_key=KEY,
            api_secret=SECRET,
            # hs.test is restricted by default here; tests that need full access say so.
            full_access_homeservers=("other.test",),
            homeserver_urls={"hs.test": homeserver.url, "evil.test": homeserver.url},
        )
    ]
    rooms = FakeRooms({ROOM: frozenset({"@alice:hs.test", "@mallory:evil.test", "@bot:own.test"})})
    now = [0.0]
    async with aiohttp.ClientSession() as session:
        service = AuthService(
            lambda: settings[0],
            session,
            logging.getLogger(LOGGER),
            own_server="own.test",
            room_members=RoomMembers(rooms.fetch, clock=lambda: now[0]),
        )
        app = web.Application()
        for method, path, handler in service.routes():
            app.router.add_route(method, path, handler)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        try:
            yield Harness(client, homeserver, settings, rooms, now)
        finally:
            await client.close()
            await service.close()


def openid(token: str = ALICE_TOKEN, server: str = "hs.test") -> dict[str, Any]:
    return {
        "access_token": token,
        "token_type": "Bearer",
        "matrix_server_name": server,
        "expires_in": 3600,
    }


def get_token_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "room_id": ROOM,
        "slot_id": "m.call#ROOM",
        "openid_token": openid(),
        "member": {
            "id": "member-uuid-1",
            "claimed_user_id": "@alice:hs.test",
            "claimed_device_id": "ALICEDEV",
        },
    }
    body.update(overrides)
    return body


def sfu_get_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"room": ROOM, "openid_token": openid(), "device_id": "ALICEDEV"}
    body.update(overrides)
    return body


# -- happy paths -----------------------------------------------------------------------------
async def test_get_token_issues_hashed_identity(harness: Harness) -> None:
    status, body = await harness.post("/get_token", get_token_body())
    assert status == 200, body
    assert set(body) == {"url", "jwt"} and body["url"] == "ws://127.0.0.1:7880"
    claims = api.TokenVerifier(KEY, SECRET).verify(body["jwt"])
    assert claims.identity == livekit_identity("@alice:hs.test", "ALICEDEV", "member-uuid-1")
    video = claims.video
    assert video is not None
    assert video.room == livekit_room_alias(ROOM, "m.call#ROOM")
    assert video.room_join is True and video.can_subscribe is True
    assert not video.room_create and not video.room_admin and not video.hidden
    raw = decode_jwt_claims(body["jwt"])
    assert raw["exp"] - raw["nbf"] == 3600 and raw["iss"] == KEY
    assert harness.hs.seen == [ALICE_TOKEN]


async def test_get_token_other_slot(harness: Harness) -> None:
    status, body = await harness.post("/get_token", get_token_body(slot_id="m.call#SIDE"))
    assert status == 200
    claims = api.TokenVerifier(KEY, SECRET).verify(body["jwt"])
    assert claims.video is not None
    assert claims.video.room == livekit_room_alias(ROOM, "m.call#SIDE")


async def test_sfu_get_issues_legacy_identity(harness: Harness) -> None:
    status, body = await harness.post("/sfu/get", sfu_get_body())
    assert status == 200, body
    claims = api.TokenVerifier(KEY, SECRET).verify(body["jwt"])
    assert claims.identity == "@alice:hs.test:ALICEDEV"
    assert claims.video is not None
    assert claims.video.room == livekit_room_alias(ROOM, "m.call#ROOM")


async def test_delay_fields_accepted(harness: Harness) -> None:
    body = get_token_body(delay_id="syd_abc", delay_timeout=18000, delay_cs_api_url="https://x")
    status, _ = await harness.post("/get_token", body)
    assert status == 200
    status, _ = await harness.post("/sfu/get", sfu_get_body(delay_id="d", delay_timeout=5000))
    assert status == 200
    # Below the minimum: a restart every 80 % of it would spend the homeserver's budget.
    status, answer = await harness.post("/sfu/get", sfu_get_body(delay_id="d", delay_timeout=4999))
    assert (status, answer["errcode"]) == (400, "M_BAD_JSON")
    assert "at least 5000" in answer["error"]


async def test_healthz_options_and_cors(harness: Harness) -> None:
    resp = await harness.client.get("/healthz")
    assert resp.status == 200 and await resp.json() == {"status": "ok"}
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    resp = await harness.client.head("/healthz")
    assert resp.status == 200
    for path in ("/get_token", "/sfu/get"):
        resp = await harness.client.options(
            path,
            headers={"Origin": "https://call.test", "Access-Control-Request-Method": "POST"},
        )
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "POST" in resp.headers["Access-Control-Allow-Methods"]
        assert "Content-Type" in resp.headers["Access-Control-Allow-Headers"]
    resp = await harness.client.post("/get_token", data="nope")
    assert resp.headers["Access-Control-Allow-Origin"] == "*"  # errors carry CORS too


async def test_client_and_service_agree(harness: Harness) -> None:
    """rtcbot's own client, pointed at rtcbot's own service."""
    async with aiohttp.ClientSession() as session:
        access = await AuthServiceClient(session).get_access(
            str(harness.client.make_url("")),
            ROOM,
            openid(),
            "@alice:hs.test",
            "ALICEDEV",
            "member-uuid-1",
        )
    assert access.via == "get_token"
    assert access.identity == livekit_identity("@alice:hs.test", "ALICEDEV", "member-uuid-1")
    assert access.room == livekit_room_alias(ROOM)


# -- strict JSON -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "field_name"),
    [
        (get_token_body(extra=1), "extra"),
        (get_token_body(openid_token={**openid(), "user_id": "@a:b"}), "openid_token.user_id"),
        (
            get_token_body(
                member={
                    "id": "m",
                    "claimed_user_id": "@alice:hs.test",
                    "claimed_device_id": "D",
                    "foci": [],
                }
            ),
            "member.foci",
        ),
        (get_token_body(room="!legacy:hs.test"), "room"),
    ],
)
async def test_unknown_field_is_rejected(
    harness: Harness, body: dict[str, Any], field_name: str
) -> None:
    status, answer = await harness.post("/get_token", body)
    assert status == 400 and answer["errcode"] == "M_BAD_JSON"
    assert f"`{field_name}`" in answer["error"]
    assert harness.hs.seen == []  # rejected before anything was verified


async def test_sfu_get_unknown_field_is_rejected(harness: Harness) -> None:
    status, answer = await harness.post("/sfu/get", sfu_get_body(remove_me_user_id="@a:b"))
    assert status == 400 and answer["errcode"] == "M_BAD_JSON"
    assert "remove_me_user_id" in answer["error"]


@pytest.mark.parametrize("raw", ["", "not json", "{", b"\xff\xfe{}"])
async def test_not_json(harness: Harness, raw: str | bytes) -> None:
    status, answer = await harness.post("/get_token", raw)
    assert status == 400 and answer["errcode"] == "M_NOT_JSON"


@pytest.mark.parametrize("raw", ["[]", "null", '"text"', "42"])
async def test_json_but_not_an_object(harness: Harness, raw: str) -> None:
    status, answer = await harness.post("/sfu/get", raw)
    assert status == 400 and answer["errcode"] == "M_BAD_JSON"


def _without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/get_token", _without(get_token_body(), "member")),
        ("/get_token", _without(get_token_body(), "room_id")),
        ("/get_token", _without(get_token_body(), "slot_id")),
        ("/get_token", _without(get_token_body(), "openid_token")),
        ("/get_token", get_token_body(member={"id": "m", "claimed_user_id": "@alice:hs.test"})),
        ("/get_token", get_token_body(member="m")),
        ("/get_token", get_token_body(room_id=5)),
        ("/get_token", get_token_body(room_id="")),
        ("/get_token", get_token_body(openid_token={"access_token": ALICE_TOKEN})),
        ("/get_token", get_token_body(openid_token={**openid(), "expires_in": "3600"})),
        ("/get_token", get_token_body(openid_token={**openid(), "expires_in": True})),
        ("/get_token", get_token_body(delay_id="d")),
        ("/get_token", get_token_body(delay_timeout=1000)),
        ("/get_token", get_token_body(delay_id="d", delay_timeout=0)),
        ("/get_token", get_token_body(delay_id="d", delay_timeout="1000")),
        ("/get_token", get_token_body(delay_cs_api_url=7)),
        ("/sfu/get", _without(sfu_get_body(), "device_id")),
        ("/sfu/get", _without(sfu_get_body(), "room")),
        ("/sfu/get", sfu_get_body(openid_token=[])),
        ("/sfu/get", sfu_get_body(device_id=None)),
    ],
)
async def test_missing_or_wrong_typed_fields(harness: Harness, path: str, body: Any) -> None:
    status, answer = await harness.post(path, body)
    assert status == 400, answer
    assert answer["errcode"] == "M_BAD_JSON" and answer["error"]
    assert harness.hs.seen == []


async def test_body_too_large(harness: Harness) -> None:
    status, answer = await harness.post("/get_token", get_token_body(room_id="!" + "x" * 70000))
    assert status == 413 and answer["errcode"] == "M_TOO_LARGE"


# -- OpenID verification ---------------------------------------------------------------------
async def _assert_unauthorised(harness: Harness, path: str, body: dict[str, Any]) -> None:
    status, answer = await harness.post(path, body)
    assert status == 401, answer
    assert answer == {"errcode": "M_UNAUTHORIZED", "error": "The request could not be authorised."}


async def test_forged_token(harness: Harness) -> None:
    await _assert_unauthorised(
        harness, "/get_token", get_token_body(openid_token=openid("forged-token"))
    )
    await _assert_unauthorised(harness, "/sfu/get", sfu_get_body(openid_token=openid("forged")))
    assert harness.hs.seen == ["forged-token", "forged"]


async def test_claimed_user_mismatch(harness: Harness) -> None:
    member = {"id": "m", "claimed_user_id": "@bob:hs.test", "claimed_device_id": "BOBDEV"}
    await _assert_unauthorised(harness, "/get_token", get_token_body(member=member))


async def test_user_of_another_server(harness: Harness) -> None:
    # hs.test's homeserver vouches for a user of evil.test: not its call to make.
    body = get_token_body(
        openid_token=openid(MALLORY_TOKEN, "hs.test"),
        member={"id": "m", "claimed_user_id": "@mallory:evil.test", "claimed_device_id": "D"},
    )
    await _assert_unauthorised(harness, "/get_token", body)


async def test_homeserver_unreachable(harness: Harness) -> None:
    harness.configure(homeserver_urls={"hs.test": f"http://127.0.0.1:{_closed_port()}"})
    await _assert_unauthorised(harness, "/get_token", get_token_body())


@pytest.mark.parametrize(
    "server", ["hs.test/x?", "hs.test@127.0.0.1", "hs test", "hs.test:99999999", "[zz]"]
)
async def test_invalid_server_name_is_not_contacted(harness: Harness, server: str) -> None:
    await _assert_unauthorised(
        harness, "/sfu/get", sfu_get_body(openid_token=openid(ALICE_TOKEN, server))
    )
    assert harness.hs.seen == []


async def test_homeserver_answers_garbage(harness: Harness) -> None:
    async def garbage(request: web.Request) -> web.Response:
        return web.Response(text="<html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/_matrix/federation/v1/openid/userinfo", garbage)
    async with TestServer(app, host="127.0.0.1") as server:
        harness.configure(homeserver_urls={"hs.test": str(server.make_url("")).rstrip("/")})
        await _assert_unauthorised(harness, "/get_token", get_token_body())


# -- full access / room creation -------------------------------------------------------------
@pytest.mark.parametrize("full_access", [("*",), ("HS.test",)])
async def test_room_creation_failure_is_500(
    harness: Harness, full_access: tuple[str, ...]
) -> None:
    harness.configure(
        full_access_homeservers=full_access, livekit_url=f"ws://127.0.0.1:{_closed_port()}"
    )
    status, answer = await harness.post("/get_token", get_token_body())
    assert status == 500
    assert answer == {"errcode": "M_UNKNOWN", "error": "Unable to create room on SFU"}


async def test_restricted_user_needs_no_sfu(harness: Harness) -> None:
    harness.configure(livekit_url=f"ws://127.0.0.1:{_closed_port()}")
    status, _ = await harness.post("/get_token", get_token_body())
    assert status == 200


# -- disabled --------------------------------------------------------------------------------
async def test_disabled_answers_404_everywhere(harness: Harness) -> None:
    harness.configure(enabled=False)
    expected = {
        "errcode": "M_NOT_FOUND",
        "error": "The authorization service is disabled in rtcbot's config",
    }
    for method, path, body in [
        ("GET", "/healthz", None),
        ("POST", "/get_token", get_token_body()),
        ("POST", "/sfu/get", sfu_get_body()),
        ("OPTIONS", "/get_token", None),
    ]:
        resp = await harness.client.request(method, path, json=body)
        assert resp.status == 404, path
        assert await resp.json() == expected
    assert harness.hs.seen == []
    harness.configure(enabled=True)  # the settings are read per request
    assert (await harness.client.get("/healthz")).status == 200


# -- logging ---------------------------------------------------------------------------------
async def test_no_secrets_in_logs(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    jwts = []
    for path, body in [
        ("/get_token", get_token_body()),
        ("/sfu/get", sfu_get_body(delay_id="d", delay_timeout=5000)),
    ]:
        status, answer = await harness.post(path, body)
        assert status == 200
        jwts.append(answer["jwt"])
    await harness.post("/get_token", get_token_body(openid_token=openid(MALLORY_TOKEN)))
    await harness.post("/get_token", get_token_body(openid_token=openid("forged-abc123")))
    await harness.post("/get_token", get_token_body(extra=ALICE_TOKEN))
    harness.configure(homeserver_urls={"hs.test": f"http://127.0.0.1:{_closed_port()}"})
    await harness.post("/get_token", get_token_body())
    harness.configure(
        homeserver_urls={"hs.test": harness.hs.url},
        full_access_homeservers=("*",),
        livekit_url=f"ws://127.0.0.1:{_closed_port()}",
    )
    await harness.post("/get_token", get_token_body())

    # The fake homeserver's own access log legitimately shows its query string.
    records = [r for r in caplog.records if not r.name.startswith("aiohttp.access")]
    ours = [r for r in records if r.name == LOGGER]
    assert any("issued" in r.getMessage() for r in ours)
    assert any("refused" in r.getMessage() for r in ours)
    text = "\n".join(r.getMessage() + (r.exc_text or "") for r in records)
    for secret in [ALICE_TOKEN, MALLORY_TOKEN, "forged-abc123", SECRET, *jwts]:
        assert secret not in text
    # The reason is logged in enough detail to debug, just without secrets.
    assert "@alice:hs.test" in text and ROOM in text


def test_routes_mount_on_maubot_webapp() -> None:
    from maubot.plugin_server import PluginWebApp

    webapp = PluginWebApp()
    session = cast(aiohttp.ClientSession, None)  # routes() never touches it
    service = AuthService(lambda: AuthServiceSettings(), session, logging.getLogger(LOGGER))
    routes = service.routes()
    for method, path, handler in routes:
        webapp.add_route(method, path, handler)
    assert {(m, p) for m, p, _ in routes} >= {
        ("GET", "/healthz"),
        ("POST", "/get_token"),
        ("POST", "/sfu/get"),
        ("OPTIONS", "/get_token"),
        ("OPTIONS", "/sfu/get"),
    }


# -- least privilege: full access and grants -------------------------------------------------
def _video(jwt: str) -> dict[str, Any]:
    video = decode_jwt_claims(jwt)["video"]
    assert isinstance(video, dict)
    return video


async def test_restricted_user_gets_a_subscribe_only_token(harness: Harness) -> None:
    status, body = await harness.post("/get_token", get_token_body())
    assert status == 200, body
    video = _video(body["jwt"])
    # Written out as false: LiveKit reads a missing canPublish as true.
    assert video["canPublish"] is False and video["canPublishData"] is False
    assert video["canUpdateOwnMetadata"] is False
    assert video["canSubscribe"] is True and video["roomJoin"] is True
    assert harness.hs.created_rooms == []  # restricted users never create rooms


@pytest.mark.parametrize("full_access", [("*",), ("HS.test",), ("other.test", "hs.test")])
async def test_full_access_user_publishes_and_creates_the_room(
    harness: Harness, full_access: tuple[str, ...]
) -> None:
    harness.configure(full_access_homeservers=full_access, livekit_url=harness.hs.url)
    for path, body in [("/get_token", get_token_body()), ("/sfu/get", sfu_get_body())]:
        status, answer = await harness.post(path, body)
        assert status == 200, answer
        video = _video(answer["jwt"])
        assert video["canPublish"] is True and video["canPublishData"] is True
        assert video["canUpdateOwnMetadata"] is True and video["roomCreate"] is False
    assert len(harness.hs.created_rooms) == 2
    assert livekit_room_alias(ROOM).encode() in harness.hs.created_rooms[0]


async def test_default_full_access_is_the_bots_own_homeserver(
    homeserver: FakeHomeserver,
) -> None:
    settings = AuthServiceSettings(
        enabled=True,
        livekit_url=homeserver.url,
        api_key=KEY,
        api_secret=SECRET,
        homeserver_urls={"hs.test": homeserver.url, "evil.test": homeserver.url},
    )
    assert settings.full_access_homeservers == ()
    rooms = FakeRooms({ROOM: frozenset({"@alice:hs.test", "@mallory:evil.test"})})
    async with aiohttp.ClientSession() as session:
        service = AuthService(
            lambda: settings,
            session,
            logging.getLogger(LOGGER),
            own_server="hs.test",
            room_members=RoomMembers(rooms.fetch),
        )
        app = web.Application()
        for method, path, handler in service.routes():
            app.router.add_route(method, path, handler)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            resp = await client.post("/get_token", json=get_token_body())
            assert resp.status == 200
            assert _video((await resp.json())["jwt"])["canPublish"] is True
            mallory = get_token_body(
                openid_token=openid(MALLORY_TOKEN, "evil.test"),
                member={
                    "id": "m",
                    "claimed_user_id": "@mallory:evil.test",
                    "claimed_device_id": "D",
                },
            )
            resp = await client.post("/get_token", json=mallory)
            assert resp.status == 200
            assert _video((await resp.json())["jwt"])["canPublish"] is False


# -- least privilege: room membership --------------------------------------------------------
async def test_non_member_is_refused_with_403_and_cors(harness: Harness) -> None:
    harness.rooms.joined[ROOM] = frozenset({"@bob:hs.test"})
    for path, body in [("/get_token", get_token_body()), ("/sfu/get", sfu_get_body())]:
        resp = await harness.client.post(path, json=body)
        assert resp.status == 403
        assert await resp.json() == {
            "errcode": "M_FORBIDDEN",
            "error": "The requesting user is not a member of the room",
        }
        assert resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_a_refusal_asks_again_so_a_new_member_is_not_refused(harness: Harness) -> None:
    harness.rooms.joined[ROOM] = frozenset({"@bob:hs.test"})
    assert (await harness.post("/get_token", get_token_body()))[0] == 403
    harness.rooms.joined[ROOM] = frozenset({"@bob:hs.test", "@alice:hs.test"})  # alice joins
    assert (await harness.post("/get_token", get_token_body()))[0] == 403  # within 2 s
    harness.now[0] = 2.0  # the refusal's member set is old enough: asked again
    assert (await harness.post("/get_token", get_token_body()))[0] == 200
    # Members are then served from the cache.
    assert (await harness.post("/sfu/get", sfu_get_body()))[0] == 200
    assert harness.rooms.fetched == [ROOM, ROOM]


async def test_rooms_without_the_bot_follow_the_policy(harness: Harness) -> None:
    body = get_token_body(room_id=NO_BOT_ROOM)
    status, answer = await harness.post("/get_token", body)
    assert status == 403 and answer["errcode"] == "M_FORBIDDEN"
    assert "invite the bot" in answer["error"]
    status, answer = await harness.post("/sfu/get", sfu_get_body(room=NO_BOT_ROOM))
    assert status == 403 and answer["errcode"] == "M_FORBIDDEN"

    harness.configure(rooms_without_bot="full_access")
    status, answer = await harness.post("/get_token", body)  # hs.test is restricted
    assert status == 403 and "full-access homeservers" in answer["error"]
    harness.configure(full_access_homeservers=("hs.test",), livekit_url=harness.hs.url)
    assert (await harness.post("/get_token", body))[0] == 200

    harness.configure(rooms_without_bot="any_user", full_access_homeservers=("other.test",))
    status, answer = await harness.post("/get_token", body)
    assert status == 200 and _video(answer["jwt"])["canPublish"] is False


async def test_membership_unknown_is_502_and_says_nothing_more(harness: Harness) -> None:
    harness.rooms.failing = True
    status, answer = await harness.post("/get_token", get_token_body())
    assert status == 502
    assert answer == {"errcode": "M_UNKNOWN", "error": "Unable to check the room membership"}


async def test_without_a_membership_source_every_room_is_refused(
    homeserver: FakeHomeserver,
) -> None:
    settings = AuthServiceSettings(
        enabled=True,
        livekit_url=homeserver.url,
        api_key=KEY,
        api_secret=SECRET,
        homeserver_urls={"hs.test": homeserver.url},
    )
    async with aiohttp.ClientSession() as session:
        service = AuthService(lambda: settings, session, logging.getLogger(LOGGER))
        app = web.Application()
        app.router.add_post("/get_token", service.get_token)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            resp = await client.post("/get_token", json=get_token_body())
            assert resp.status == 403


@pytest.mark.parametrize(
    "room", ["#alias:hs.test", "call:hs.test", "!a b:hs.test", "!" + "x" * 255]
)
async def test_room_must_be_a_room_id(harness: Harness, room: str) -> None:
    for path, body in [
        ("/get_token", get_token_body(room_id=room)),
        ("/sfu/get", sfu_get_body(room=room)),
    ]:
        status, answer = await harness.post(path, body)
        assert status == 400 and answer["errcode"] == "M_BAD_JSON", answer
    assert harness.hs.seen == [] and harness.rooms.fetched == []


async def test_membership_cache_expires() -> None:
    now = [0.0]
    rooms = FakeRooms({ROOM: frozenset({"@a:x"})})
    members = RoomMembers(rooms.fetch, ttl=15.0, max_rooms=2, clock=lambda: now[0])
    assert (await members.membership(ROOM, "@a:x")).value == "joined"
    now[0] = 14.9
    assert (await members.membership(ROOM, "@a:x")).value == "joined"
    assert rooms.fetched == [ROOM]
    now[0] = 15.0
    rooms.joined[ROOM] = frozenset()  # a left
    assert (await members.membership(ROOM, "@a:x")).value == "not_joined"
    assert (await members.membership("!other:x", "@a:x")).value == "bot_not_in_room"
    # Bounded: a third room pushes out the oldest.
    rooms.fetched.clear()
    for room in ("!r1:x", "!r2:x", "!r3:x"):
        rooms.joined[room] = frozenset({"@a:x"})
        await members.membership(room, "@a:x")
    await members.membership("!r3:x", "@a:x")  # cached
    await members.membership("!r1:x", "@a:x")  # pushed out: asked again
    assert rooms.fetched == ["!r1:x", "!r2:x", "!r3:x", "!r1:x"]


# -- methods and bodies ----------------------------------------------------------------------
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD"])
async def test_other_methods_are_405_with_cors(harness: Harness, method: str) -> None:
    for path in ("/get_token", "/sfu/get"):
        resp = await harness.client.request(method, path)
        assert resp.status == 405, (method, path)
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "POST" in resp.headers["Allow"]


async def test_chunked_body_is_cut_off_at_the_limit(harness: Harness) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):  # 40 × 4 KiB = 160 KiB, no Content-Length
            yield b" " * 4096

    resp = await harness.client.post("/get_token", data=chunks())
    assert resp.status == 413
    assert (await resp.json())["errcode"] == "M_TOO_LARGE"


# -- config ----------------------------------------------------------------------------------
def _config(**auth: Any) -> dict[str, Any]:
    class Dotted(dict[str, Any]):
        def __getitem__(self, key: str) -> Any:
            cur: Any = dict(self)
            for part in key.split("."):
                cur = cur[part]
            return cur

    return Dotted({"auth_service": auth})


def test_auth_service_config_defaults_and_validation() -> None:
    auth = parse_settings(_config()).auth_service
    assert auth.full_access_homeservers == () and auth.rooms_without_bot == "refuse"
    auth = parse_settings(
        _config(full_access_homeservers=["*"], rooms_without_bot="any_user")
    ).auth_service
    assert auth.full_access_homeservers == ("*",) and auth.rooms_without_bot == "any_user"
    with pytest.raises(ConfigError, match=r'"\*" \(every homeserver\) must be the only entry'):
        parse_settings(_config(full_access_homeservers=["*", "example.org"]))
    with pytest.raises(ConfigError, match="rooms_without_bot must be one of refuse, full_access"):
        parse_settings(_config(rooms_without_bot="yes"))


async def test_joined_members_of_asks_the_homeserver_as_the_bot() -> None:
    from mautrix.api import HTTPAPI
    from mautrix.client import Client
    from yarl import URL

    from rtcbot.matrix.room_members import joined_members_of

    async def joined_members(request: web.Request) -> web.Response:
        room = request.match_info["room"]
        assert request.headers["Authorization"] == "Bearer bot-token"
        if room == ROOM:
            return web.json_response({"joined": {"@alice:hs.test": {}, "@bot:hs.test": {}}})
        if room == "!down:hs.test":
            return web.json_response({"errcode": "M_UNKNOWN"}, status=500)
        if room == "!slow:hs.test":
            return web.json_response({"errcode": "M_LIMIT_EXCEEDED"}, status=429)
        return web.json_response(
            {"errcode": "M_FORBIDDEN", "error": "User not in room"}, status=403
        )

    app = web.Application()
    app.router.add_get("/_matrix/client/v3/rooms/{room}/joined_members", joined_members)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        api_ = HTTPAPI(URL(str(server.make_url(""))), token="bot-token", client_session=session)

        class FakeClient:
            api = api_

        fetch = joined_members_of(cast(Client, FakeClient()))
        assert await fetch(ROOM) == frozenset({"@alice:hs.test", "@bot:hs.test"})
        assert await fetch(NO_BOT_ROOM) is None
        for room in ("!down:hs.test", "!slow:hs.test"):
            with pytest.raises(MembershipUnknown):
                await fetch(room)


async def test_delegated_leave_probe_is_a_readable_404(harness: Harness) -> None:
    """Element Call probes for delegated delayed leave. A service without a job manager (as
    this harness wires it) or with `delegate_delayed_leave: false` does not offer it: a 404
    with CORS (a browser can read it), so that Element Call keeps its own timings."""
    resp = await harness.client.options(
        "/delegate_delayed_leave",
        headers={"Origin": "https://call.test", "Access-Control-Request-Method": "POST"},
    )
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "*"
    resp = await harness.client.post("/delegate_delayed_leave", json={"delay_id": "x"})
    assert resp.status == 404 and resp.headers["Access-Control-Allow-Origin"] == "*"
    assert (await resp.json())["errcode"] == "M_NOT_FOUND"


# -- rate limits per client IP -----------------------------------------------------------------
async def _status(harness: Harness, forwarded_for: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    resp = await harness.client.post("/sfu/get", json=sfu_get_body(), headers=headers)
    return resp.status


async def test_a_client_ip_past_its_bucket_gets_429(harness: Harness) -> None:
    harness.configure(rate_limit_per_ip_burst=2, rate_limit_per_ip_per_s=0.01)
    assert [await _status(harness) for _ in range(3)] == [200, 200, 429]
    resp = await harness.client.post("/sfu/get", json=sfu_get_body())
    answer = await resp.json()
    assert answer["errcode"] == "M_LIMIT_EXCEEDED" and answer["retry_after_ms"] > 0
    # A malformed body is refused before it is counted (it costs nothing outbound).
    assert (await harness.post("/sfu/get", {"room": 5}))[0] == 400
    # X-Forwarded-For is not believed from a peer that is not a configured proxy.
    assert await _status(harness, "198.51.100.7") == 429


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket(
    harness: Harness,
) -> None:
    harness.configure(
        rate_limit_per_ip_burst=1, rate_limit_per_ip_per_s=0.01, trusted_proxies=("127.0.0.1",)
    )
    assert await _status(harness, "198.51.100.7") == 200
    assert await _status(harness, "198.51.100.7") == 429
    # The client named last by the proxy counts, not one a caller put in front of it.
    assert await _status(harness, "198.51.100.7, 203.0.113.9") == 200
    assert await _status(harness, "203.0.113.9") == 429


async def test_a_client_is_one_key_whatever_way_its_address_is_spelled(
    harness: Harness,
) -> None:
    """Review finding 3: the bucket was keyed by the address string, so an IPv6 client had
    2^64 fresh buckets and an IPv4 one two spellings. Now: IPv4-mapped IPv6 counts as the
    IPv4, IPv6 by its /64, a proxy may be a CIDR, a hop that is no IP falls back to the peer."""
    harness.configure(
        rate_limit_per_ip_burst=1, rate_limit_per_ip_per_s=0.01, trusted_proxies=("127.0.0.0/8",)
    )
    assert await _status(harness, "198.51.100.7") == 200
    assert await _status(harness, "::ffff:198.51.100.7") == 429
    assert await _status(harness, "2001:db8:1:2::1") == 200
    assert await _status(harness, "2001:db8:1:2:ffff::9") == 429  # the same /64
    assert await _status(harness, "2001:db8:1:3::1") == 200  # another /64
    assert await _status(harness, "unknown") == 200  # no IP: the proxy's own bucket
    assert await _status(harness, "not-an-ip") == 429  # the same one
    with pytest.raises(ConfigError, match="trusted_proxies"):
        parse_settings(_config(trusted_proxies=["proxy.example"]))
    auth = parse_settings(_config(trusted_proxies=["10.0.0.0/8", "::1"])).auth_service
    assert auth.trusted_proxies == ("10.0.0.0/8", "::1")


# -- the bot's own account ---------------------------------------------------------------------
async def test_the_bots_own_token_only_when_the_bot_sent_it_here(
    homeserver: FakeHomeserver,
) -> None:
    """alice plays the bot here: its token opens every room it is in, so a copy presented by
    anyone else (a service it was sent to, replaying it) is refused."""
    settings = AuthServiceSettings(
        enabled=True,
        livekit_url="ws://127.0.0.1:7880",
        api_key=KEY,
        api_secret=SECRET,
        full_access_homeservers=("other.test",),
        homeserver_urls={"hs.test": homeserver.url},
    )
    rooms = FakeRooms({ROOM: frozenset({"@alice:hs.test"})})
    own_url = "https://maubot.hs.test/_matrix/maubot/plugin/rtcbot"
    async with aiohttp.ClientSession() as session:
        service = AuthService(
            lambda: settings,
            session,
            logging.getLogger(LOGGER),
            own_user_id="@alice:hs.test",
            own_service_url=own_url,
            room_members=RoomMembers(rooms.fetch),
        )
        app = web.Application()
        for method, path, handler in service.routes():
            app.router.add_route(method, path, handler)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:

            async def status() -> tuple[int, str]:
                resp = await client.post("/sfu/get", json=sfu_get_body())
                return resp.status, (await resp.json()).get("errcode", "")

            assert await status() == (403, "M_FORBIDDEN")  # never sent by the bot
            note_sent(ALICE_TOKEN, "https://eve.example/svc")
            assert await status() == (403, "M_FORBIDDEN")  # sent to another service
            note_sent(ALICE_TOKEN, own_url + "/")
            assert (await status())[0] == 200  # the bot's own request to its own service
        await service.close()


async def test_membership_questions_share_one_fetch_and_refusals_are_cached_briefly() -> None:
    """Review finding 2: 200 concurrent questions about one big room by a user who is not in it
    made 200 `joined_members` requests on the Matrix client's pool. Now they share one fetch;
    a refusal is answered from the member set for ~2 s (a left user is still refused at least
    as fresh as the 15 s positive rule), and fetches of many rooms at once are bounded."""
    now = [0.0]
    gate = asyncio.Event()
    in_flight = [0, 0]  # now, most at once
    rooms = FakeRooms({f"!r{i}:x": frozenset({"@a:x"}) for i in range(20)})

    async def slow_fetch(room_id: str) -> frozenset[str] | None:
        in_flight[0] += 1
        in_flight[1] = max(in_flight[1], in_flight[0])
        try:
            await gate.wait()
            return await rooms.fetch(room_id)
        finally:
            in_flight[0] -= 1

    members = RoomMembers(slow_fetch, clock=lambda: now[0])
    asks = [members.membership("!r0:x", f"@evil{i}:attacker") for i in range(200)]
    pending = asyncio.gather(*asks)
    await asyncio.sleep(0)
    gate.set()
    assert {m.value for m in await pending} == {"not_joined"}
    assert rooms.fetched == ["!r0:x"]
    now[0] = 1.9  # still fresh for a refusal
    assert (await members.membership("!r0:x", "@evil0:attacker")).value == "not_joined"
    assert rooms.fetched == ["!r0:x"]
    now[0] = 2.0  # asked again: someone who just joined is let in
    rooms.joined["!r0:x"] = frozenset({"@a:x", "@evil0:attacker"})
    assert (await members.membership("!r0:x", "@evil0:attacker")).value == "joined"
    assert rooms.fetched == ["!r0:x", "!r0:x"]
    # Many rooms at once: a few fetches at a time, not one per room.
    gate.clear()
    pending = asyncio.gather(*(members.membership(f"!r{i}:x", "@a:x") for i in range(1, 20)))
    for _ in range(5):
        await asyncio.sleep(0)
    gate.set()
    assert {m.value for m in await pending} == {"joined"}
    assert 1 <= in_flight[1] <= 4, in_flight
