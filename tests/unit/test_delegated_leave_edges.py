"""The edges of delegated delayed leave, on real HTTP over loopback: the authorization service's
answers (`/delegate_delayed_leave`, delay fields on the token endpoints), the client-server API
discovery, and the unauthenticated restart/send call.

A tiny aiohttp app plays the homeserver (OpenID userinfo, `.well-known/matrix/client`, the
delayed-event endpoints) and records what it was asked; the job manager is a fake `delegate`
that records the LeaveRequests it is handed (the manager itself runs on the real stack in
tests/integration/test_delegated_leave.py).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from rtcbot.auth.delegations import fingerprint
from rtcbot.auth.service import AuthService
from rtcbot.auth.settings import AuthServiceSettings
from rtcbot.config import ConfigError
from rtcbot.matrix.client_discovery import ClientApiDiscovery, ClientApiUnresolvable
from rtcbot.matrix.delayed_actions import delayed_event_action
from rtcbot.matrix.room_members import RoomMembers
from rtcbot.rtc.delegated_leave import Result
from rtcbot.rtc.identity import livekit_identity, livekit_room_alias
from rtcbot.rtc.leave_request import DelegationRefused, LeaveRequest
from rtcbot.settings import parse_settings

KEY = "unit-auth-key"
SECRET = "unit-auth-secret-0123456789abcdef0123456789"
ALICE = "alice-openid-token-7f3a9c1e5b"
MALLORY = "mallory-openid-token-c0ffee"
ROOM = "!call:hs.test"
DELAY_ID = "syd_CapabilityNeverLogged"
LOGGER = "rtcbot.test.delegation"


@dataclass
class Homeserver:
    """OpenID userinfo, the C-S well-known and MSC4140's delayed-event actions, recorded."""

    url: str = ""
    userinfo_calls: int = 0
    forged_hits: int = 0
    well_known_hits: int = 0
    well_known: Any = None  # the JSON answer, or a status code
    actions: list[tuple[str, str, dict[str, Any], str | None]] = field(default_factory=list)
    # delay id → (status, body, headers) of the per-action endpoint
    answers: dict[str, tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=dict)

    async def userinfo(self, request: web.Request) -> web.Response:
        self.userinfo_calls += 1
        users = {ALICE: "@alice:hs.test", MALLORY: "@mallory:evil.test"}
        token = request.query.get("access_token", "")
        if token not in users:
            return web.json_response({"errcode": "M_UNKNOWN_TOKEN"}, status=401)
        return web.json_response({"sub": users[token]})

    async def create_room(self, request: web.Request) -> web.Response:
        return web.Response(body=b"", content_type="application/protobuf")  # LiveKit's twirp

    async def forged(self, request: web.Request) -> web.Response:
        self.forged_hits += 1
        return web.json_response({})

    async def client_well_known(self, request: web.Request) -> web.Response:
        self.well_known_hits += 1
        if isinstance(self.well_known, int):
            return web.json_response({}, status=self.well_known)
        if self.well_known == "redirect":
            raise web.HTTPFound(location=f"{self.url}/elsewhere")
        if self.well_known == "huge":
            return web.json_response({"pad": "x" * 20_000})
        return web.json_response(self.well_known)

    async def action(self, request: web.Request) -> web.Response:
        delay_id = request.match_info["delay_id"]
        action = request.match_info.get("action", "")
        body = await request.json()
        self.actions.append((request.raw_path, action, body, request.headers.get("Authorization")))
        if not action:  # the older body form
            return web.json_response({})
        status, answer, headers = self.answers.get(delay_id, (200, {}, {}))
        return web.json_response(answer, status=status, headers=headers)


@pytest.fixture
async def hs() -> AsyncIterator[Homeserver]:
    server_state = Homeserver()
    app = web.Application()
    app.router.add_get("/_matrix/federation/v1/openid/userinfo", server_state.userinfo)
    app.router.add_route("*", "/forged/{tail:.*}", server_state.forged)
    app.router.add_post("/twirp/livekit.RoomService/CreateRoom", server_state.create_room)
    app.router.add_get("/.well-known/matrix/client", server_state.client_well_known)
    base = "/_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delay_id}"
    app.router.add_post(base + "/{action}", server_state.action)
    app.router.add_post(base, server_state.action)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    server_state.url = str(server.make_url("")).rstrip("/")
    yield server_state
    await server.close()


# -- the authorization service -------------------------------------------------------------------
@dataclass
class Service:
    client: TestClient
    hs: Homeserver
    settings: list[AuthServiceSettings]
    handed: list[LeaveRequest]
    refuse: list[DelegationRefused]

    async def post(self, path: str, body: Any) -> tuple[int, dict[str, Any], Any]:
        kwargs = {"data": body} if isinstance(body, str | bytes) else {"json": body}
        resp = await self.client.post(path, **kwargs)
        return resp.status, await resp.json(), resp.headers


@pytest.fixture
async def service(hs: Homeserver) -> AsyncIterator[Service]:
    settings = [
        AuthServiceSettings(
            enabled=True,
            livekit_url=hs.url,  # plays LiveKit's CreateRoom too
            api_key=KEY,
            api_secret=SECRET,
            full_access_homeservers=("hs.test",),  # evil.test (mallory) is restricted
            homeserver_urls={"hs.test": hs.url, "evil.test": hs.url},
            rooms_without_bot="any_user",
        )
    ]
    handed: list[LeaveRequest] = []
    refuse: list[DelegationRefused] = []

    async def delegate(request: LeaveRequest) -> None:
        if refuse:
            raise refuse[0]
        handed.append(request)

    async def joined(room_id: str) -> frozenset[str] | None:
        return frozenset({"@alice:hs.test", "@mallory:evil.test"})

    async with aiohttp.ClientSession() as session:
        auth = AuthService(
            lambda: settings[0],
            session,
            logging.getLogger(LOGGER),
            own_server="hs.test",
            room_members=RoomMembers(joined),
            delegate=delegate,
        )
        app = web.Application()
        for method, path, handler in auth.routes():
            app.router.add_route(method, path, handler)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        try:
            yield Service(client, hs, settings, handed, refuse)
        finally:
            await client.close()
            await auth.close()


def body(token: str = ALICE, server: str = "hs.test", user: str = "@alice:hs.test", **kw: Any):  # type: ignore[no-untyped-def]
    out: dict[str, Any] = {
        "room_id": ROOM,
        "slot_id": "m.call#ROOM",
        "openid_token": {
            "access_token": token,
            "token_type": "Bearer",
            "matrix_server_name": server,
            "expires_in": 3600,
        },
        "member": {"id": "member-1", "claimed_user_id": user, "claimed_device_id": "DEV"},
        "delay_id": DELAY_ID,
        "delay_timeout": 18_000,
    }
    out.update(kw)
    return {k: v for k, v in out.items() if v is not None}


async def test_the_probe_without_a_body_gets_lk_jwts_400_with_cors(service: Service) -> None:
    """Element Call's support check: an empty POST; any answer but 404 means supported."""
    resp = await service.client.post("/delegate_delayed_leave")
    assert resp.status == 400
    assert await resp.json() == {"errcode": "M_NOT_JSON", "error": "Error reading request"}
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert service.hs.userinfo_calls == 0  # no OpenID call for a body that is not there
    resp = await service.client.options(
        "/delegate_delayed_leave",
        headers={"Origin": "https://call.test", "Access-Control-Request-Method": "POST"},
    )
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "*"
    resp = await service.client.get("/delegate_delayed_leave")
    assert resp.status == 405 and resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_a_delegation_is_handed_over_keyed_by_room_and_hashed_identity(
    service: Service,
) -> None:
    forged = f"{service.hs.url}/forged/_matrix/client"
    status, answer, headers = await service.post(
        "/delegate_delayed_leave", body(delay_cs_api_url=forged)
    )
    assert (status, answer) == (200, {}) and headers["Access-Control-Allow-Origin"] == "*"
    assert service.handed == [
        LeaveRequest(
            livekit_room=livekit_room_alias(ROOM, "m.call#ROOM"),
            identity=livekit_identity("@alice:hs.test", "DEV", "member-1"),
            delay_id=DELAY_ID,
            delay_timeout_ms=18_000,
            server_name="hs.test",
            user_id="@alice:hs.test",
            room_id=ROOM,
        )
    ]
    assert service.hs.forged_hits == 0


@pytest.mark.parametrize(
    ("changes", "status", "errcode"),
    [
        ({"delay_id": None}, 400, "M_BAD_JSON"),
        ({"delay_timeout": None}, 400, "M_BAD_JSON"),
        ({"delay_timeout": 0}, 400, "M_BAD_JSON"),
        ({"delay_timeout": 8 * 86_400_000}, 400, "M_BAD_JSON"),
        ({"delay_id": "x" * 300}, 400, "M_BAD_JSON"),
        ({"delay_id": "line\nbreak"}, 400, "M_BAD_JSON"),
        ({"colour": "red"}, 400, "M_BAD_JSON"),
        ({"token": "forged"}, 401, "M_UNAUTHORIZED"),
        ({"user": "@bob:hs.test"}, 401, "M_UNAUTHORIZED"),  # claimed user is not the owner
        ({"token": MALLORY, "server": "evil.test", "user": "@mallory:evil.test"}, 403, None),
    ],
)
async def test_bad_delegations_get_lk_jwts_answers(
    service: Service, changes: dict[str, Any], status: int, errcode: str | None
) -> None:
    kw = {k: v for k, v in changes.items() if k in ("token", "server", "user")}
    extra = {k: v for k, v in changes.items() if k not in kw}
    sent = body(**kw)
    for k, v in extra.items():
        if v is None:
            sent.pop(k)
        else:
            sent[k] = v
    got, answer, headers = await service.post("/delegate_delayed_leave", sent)
    assert got == status, answer
    assert headers["Access-Control-Allow-Origin"] == "*"
    if status == 403:
        assert answer == {
            "errcode": "M_FORBIDDEN",
            "error": "Delegation of delayed events is only supported for full access users",
        }
    else:
        assert answer["errcode"] == errcode
    assert service.handed == []


async def test_token_endpoints_delegate_for_full_access_users(service: Service) -> None:
    status, answer, _ = await service.post("/get_token", body())
    assert status == 200 and set(answer) == {"url", "jwt"}
    sfu_get = {
        "room": ROOM,
        "openid_token": body()["openid_token"],
        "device_id": "DEV",
        "delay_id": DELAY_ID,
        "delay_timeout": 3_600_000,
        "delay_cs_api_url": "http://127.0.0.1:8008",
    }
    status, answer, _ = await service.post("/sfu/get", sfu_get)
    assert status == 200 and set(answer) == {"url", "jwt"}
    assert [(r.identity, r.delay_timeout_ms) for r in service.handed] == [
        (livekit_identity("@alice:hs.test", "DEV", "member-1"), 18_000),
        ("@alice:hs.test:DEV", 3_600_000),  # /sfu/get: the unhashed identity
    ]


async def test_token_endpoints_refuse_restricted_delegations_with_a_400(service: Service) -> None:
    """Element Call's /sfu/get retries without the delay fields on 400 M_BAD_JSON."""
    mallory = body(MALLORY, "evil.test", "@mallory:evil.test")
    status, answer, _ = await service.post("/get_token", mallory)
    assert status == 400 and answer["errcode"] == "M_BAD_JSON"
    assert "only supported for full access users" in answer["error"]
    mallory.pop("delay_id"), mallory.pop("delay_timeout")
    status, answer, _ = await service.post("/get_token", mallory)
    assert status == 200  # the same user without delegation gets a (subscribe-only) token
    assert service.handed == []


@pytest.mark.parametrize(
    ("kind", "status", "errcode", "text"),
    [
        ("unresolvable", 400, "M_BAD_JSON", "Unable to resolve client-server API"),
        ("too_many", 400, "M_BAD_JSON", "Too many delegated delayed leaves for this user"),
        ("unavailable", 503, "M_UNKNOWN", "Service is shutting down"),
    ],
)
async def test_a_refused_delegation_gets_its_answer(
    service: Service, kind: Any, status: int, errcode: str, text: str
) -> None:
    service.refuse.append(DelegationRefused(kind, "because"))
    for path in ("/delegate_delayed_leave", "/get_token"):
        got, answer, _ = await service.post(path, body())
        assert (got, answer) == (status, {"errcode": errcode, "error": text})


async def test_switched_off_the_probe_gets_a_404_and_delay_fields_are_ignored(
    service: Service,
) -> None:
    service.settings[0] = replace(service.settings[0], delegate_delayed_leave=False)
    resp = await service.client.post("/delegate_delayed_leave")
    assert resp.status == 404 and (await resp.json())["errcode"] == "M_NOT_FOUND"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    status, _, _ = await service.post("/get_token", body())
    assert status == 200 and service.handed == []
    # Restricted users are not refused for fields that are ignored anyway.
    status, _, _ = await service.post(
        "/get_token", body(MALLORY, "evil.test", "@mallory:evil.test")
    )
    assert status == 200


async def test_the_delay_id_never_reaches_the_log(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    await service.post("/delegate_delayed_leave", body(delay_cs_api_url="https://cs.example"))
    await service.post("/delegate_delayed_leave", body(MALLORY, "evil.test", "@mallory:evil.test"))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "delegated its delayed leave via /delegate_delayed_leave" in text
    assert "'https://cs.example' ignored" in text
    assert DELAY_ID not in text and ALICE not in text
    assert DELAY_ID not in fingerprint(DELAY_ID) and fingerprint(DELAY_ID).startswith("delay #")


class Dotted(dict[str, Any]):
    """maubot's config proxy reads dotted keys."""

    def __getitem__(self, key: str) -> Any:
        cur: Any = dict(self)
        for part in key.split("."):
            cur = cur[part]
        return cur


def test_config_client_api_urls_and_delegation_keys() -> None:
    base = {"client_api_urls": {"example.org": "https://matrix.example.org/"}}
    auth = parse_settings(Dotted(auth_service=base)).auth_service
    assert auth.client_api_urls == {"example.org": "https://matrix.example.org"}
    assert auth.delegate_delayed_leave is True and auth.delegated_leave_check_s == 30.0
    assert auth.delegated_leave_connect_timeout_s == 3600.0
    with pytest.raises(ConfigError, match=r"auth_service.client_api_urls.example.org must be"):
        parse_settings(Dotted(auth_service={"client_api_urls": {"example.org": "ftp://x"}}))
    with pytest.raises(ConfigError, match="delegated_leave_check_s must be between"):
        parse_settings(Dotted(auth_service={"delegated_leave_check_s": -1}))


# -- client-server API discovery -----------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _discovery(
    session: aiohttp.ClientSession, hs: Homeserver, clock: FakeClock, **kw: Any
) -> ClientApiDiscovery:
    overrides: dict[str, str] = kw.pop("overrides", {})
    return ClientApiDiscovery(
        session,
        lambda: overrides,
        own_server="own.test",
        own_url=lambda: "http://bot-homeserver.test:8008/",
        scheme="http",
        clock=clock,
        **kw,
    )


async def test_the_cs_api_comes_from_overrides_the_bots_server_or_the_well_known(
    hs: Homeserver,
) -> None:
    authority = hs.url.removeprefix("http://")  # 127.0.0.1:<port>: a server name with a port
    hs.well_known = {"m.homeserver": {"base_url": "http://matrix.example.test/"}}
    clock = FakeClock()
    async with aiohttp.ClientSession() as session:
        d = _discovery(session, hs, clock, overrides={"pinned.test": "https://pinned/"})
        assert await d.base_url("pinned.test") == "https://pinned"
        assert await d.base_url("own.test") == "http://bot-homeserver.test:8008"
        assert hs.well_known_hits == 0
        assert await d.base_url(authority) == "http://matrix.example.test"
        assert await d.base_url(authority) == "http://matrix.example.test"
        assert hs.well_known_hits == 1  # cached
        clock.now += 4 * 3600 + 1
        assert await d.base_url(authority) == "http://matrix.example.test"
        assert hs.well_known_hits == 2  # the cache lasts 4 h


@pytest.mark.parametrize(
    "answer",
    [
        404,
        500,
        "redirect",  # redirects are not followed
        "huge",
        {"m.homeserver": {}},
        {"m.homeserver": {"base_url": "ftp://matrix.example.test"}},
        {"m.homeserver": {"base_url": "http://a b"}},
        ["not", "an", "object"],
    ],
)
async def test_an_unusable_well_known_is_unresolvable_and_remembered_a_minute(
    hs: Homeserver, answer: Any
) -> None:
    authority = hs.url.removeprefix("http://")
    hs.well_known = answer
    clock = FakeClock()
    async with aiohttp.ClientSession() as session:
        d = _discovery(session, hs, clock)
        for _ in range(2):
            with pytest.raises(ClientApiUnresolvable):
                await d.base_url(authority)
        assert hs.well_known_hits == 1
        clock.now += 61
        with pytest.raises(ClientApiUnresolvable):
            await d.base_url(authority)
        assert hs.well_known_hits == 2


async def test_no_lookup_for_something_that_is_not_a_server_name(hs: Homeserver) -> None:
    async with aiohttp.ClientSession() as session:
        d = _discovery(session, hs, FakeClock())
        for name in ("", "a b", "evil.test/path", "host:99999", "x" * 300):
            with pytest.raises(ClientApiUnresolvable):
                await d.base_url(name)
    assert hs.well_known_hits == 0


# -- restart / send --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "result", "retry_after"),
    [
        ((200, {}, {}), Result.OK, None),
        ((404, {"errcode": "M_NOT_FOUND"}, {}), Result.NOT_FOUND, None),
        (
            (429, {"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 1500}, {}),
            Result.RATE_LIMITED,
            1.5,
        ),
        ((429, {"errcode": "M_LIMIT_EXCEEDED"}, {"Retry-After": "7"}), Result.RATE_LIMITED, 7.0),
        ((502, {"errcode": "M_UNKNOWN"}, {}), Result.TRANSIENT, None),
        ((403, {"errcode": "M_FORBIDDEN"}, {}), Result.REFUSED, None),
        ((400, {"errcode": "M_INVALID_PARAM"}, {}), Result.REFUSED, None),
    ],
)
async def test_restart_and_send_answers(
    hs: Homeserver,
    answer: tuple[int, dict[str, Any], dict[str, str]],
    result: Result,
    retry_after: float | None,
) -> None:
    hs.answers[DELAY_ID] = answer
    async with aiohttp.ClientSession() as session:
        got = await delayed_event_action(session, hs.url, DELAY_ID, "restart")
    assert (got.result, got.retry_after_s) == (result, retry_after)
    assert DELAY_ID not in got.detail
    _path, action, sent, auth = hs.actions[0]
    assert action == "restart" and sent == {} and auth is None  # the delay id is the capability
    assert len(hs.actions) == 1


async def test_an_older_server_gets_the_body_form(hs: Homeserver) -> None:
    hs.answers[DELAY_ID] = (404, {"errcode": "M_UNRECOGNIZED"}, {})
    async with aiohttp.ClientSession() as session:
        got = await delayed_event_action(session, hs.url, DELAY_ID, "send")
    assert got.result is Result.OK
    assert [(a, b) for _, a, b, _ in hs.actions] == [("send", {}), ("", {"action": "send"})]


async def test_the_delay_id_stays_one_path_segment(hs: Homeserver) -> None:
    async with aiohttp.ClientSession() as session:
        await delayed_event_action(session, hs.url, "a/../b?c#d", "restart")
    assert hs.actions[0][0].endswith("/delayed_events/a%2F..%2Fb%3Fc%23d/restart")


async def test_an_unreachable_homeserver_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with aiohttp.ClientSession() as session:
        got = await delayed_event_action(session, f"http://127.0.0.1:{port}", DELAY_ID, "send")
    assert got.result is Result.TRANSIENT and DELAY_ID not in got.detail
