"""Fuzz the plugin's web endpoints on the real maubot server with a fixed corpus.

Every endpoint the plugin serves (`/get_token`, `/sfu/get`, `/delegate_delayed_leave`, `/healthz`,
`/status`, `/metrics`, `/health`, `/sfu_webhook`) gets malformed JSON, wrong types in every field, unknown fields,
2 MiB bodies (with and without a Content-Length), every method, bad Content-Types and bad
bearer tokens. The corpus is a fixed list built from a valid request (deterministic: no
random generation), so a failure names the exact case and reruns the same way.

What must hold: no answer is a 5xx, and the maubot log gains no `Traceback` (an exception
that escaped a handler) and no secret while the corpus runs.

Deliberately left out: malformed HTTP framing (oversized header lines, broken chunk sizes).
Those never reach the plugin: aiohttp's parser in maubot answers 400 and logs the parse error
with a traceback itself, which no plugin code can change.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from livekit import api
from mautrix.api import Method, Path
from yarl import URL

from rtcbot_stack.stack import Stack
from tests.stack.matrix_user import MatrixUser

pytestmark = pytest.mark.stack

STATUS_TOKEN = "fuzz-status-token-5b1e0c7d"
TWO_MIB = 2 * 1024 * 1024
DISCONNECTED = 0  # the server closed the connection before answering
PATHS = (
    "/get_token",
    "/sfu/get",
    "/delegate_delayed_leave",
    "/healthz",
    "/status",
    "/metrics",
    "/health",
    "/sfu_webhook",
)
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND")

# Values put in place of every field. No string here is a resolvable host name, so nothing
# leaves the stack when one lands in `matrix_server_name` (network rules).
BAD_VALUES: list[Any] = [
    None,
    0,
    -1,
    2**70,
    1.5,
    True,
    False,
    "",
    "\u0000",
    "\ud800",  # a lone surrogate: valid JSON escape, not Unicode
    "line\nbreak",
    "x" * 5000,
    "!room with spaces:localhost",
    "!nonexistent:localhost",  # a room ID the bot is not in
    "!a/../b?c#d%2F:localhost",  # must stay one path segment towards the homeserver
    "@a:b:c",
    [],
    ["x"],
    {},
    {"nested": {"deeper": ["x", {"k": None}]}},
]

RAW_BODIES: list[bytes] = [
    b"",
    b" ",
    b"{",
    b"}",
    b"not json",
    b"\xff\xfe\x00",
    b"null",
    b"[]",
    b"[{}]",
    b"42",
    b'"text"',
    b"true",
    b"NaN",
    b'{"a": NaN, "b": Infinity}',
    b"1" * 5000,  # past Python's int digit limit
    b"[" * 100_000,  # deeper than the recursion limit
    b'{"a":' * 30_000,
    b'{"room_id": "\\ud800"}',
    b'{"\\ud800": 1}',
    b'{"room_id": "!a:b", "room_id": 5}',
    b"\x00" * 100,
    '{"room_id": "ünïcödé"}'.encode("utf-16"),
    b'{"openid_token": {"access_token": "\\u0000"}}',
    b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark
]

CONTENT_TYPES = (
    "text/plain",
    "application/json; charset=bogus",
    "application/json; charset=utf-16",
    "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded",
    "application/octet-stream",
)


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    chunked: bool = False


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _leaf_paths(obj: dict[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, value in obj.items():
        yield (*prefix, key)
        if isinstance(value, dict):
            yield from _leaf_paths(value, (*prefix, key))


def _with(body: dict[str, Any], path: tuple[str, ...], value: Any, delete: bool = False) -> Any:
    out = copy.deepcopy(body)
    target = out
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


def _field_cases(endpoint: str, valid: dict[str, Any]) -> Iterator[Case]:
    yield Case(f"{endpoint} valid", "POST", endpoint, _json(valid))
    for path in _leaf_paths(valid):
        dotted = ".".join(path)
        yield Case(
            f"{endpoint} without {dotted}", "POST", endpoint, _json(_with(valid, path, 0, True))
        )
        for i, value in enumerate(BAD_VALUES):
            body = _with(valid, path, value)
            yield Case(f"{endpoint} {dotted}=BAD_VALUES[{i}]", "POST", endpoint, _json(body))
    for where in ((), ("openid_token",), ("member",)):
        if all(k in valid for k in where):
            body = _with(valid, (*where, "unknown_field"), "x")
            yield Case(f"{endpoint} unknown field in {where}", "POST", endpoint, _json(body))
    for i, raw in enumerate(RAW_BODIES):
        yield Case(f"{endpoint} RAW_BODIES[{i}]", "POST", endpoint, raw)
    for ctype in CONTENT_TYPES:
        yield Case(
            f"{endpoint} Content-Type {ctype}",
            "POST",
            endpoint,
            _json(valid),
            (("Content-Type", ctype),),
        )


def _webhook_token(secret_key: tuple[str, str], body: bytes, sha: str | None = None) -> str:
    digest = sha or base64.b64encode(hashlib.sha256(body).digest()).decode()
    return api.AccessToken(*secret_key).with_sha256(digest).to_jwt()


def _webhook_cases(stack: Stack) -> Iterator[Case]:
    key = (stack.secrets["livekit_api_key"], stack.secrets["livekit_api_secret"])
    event = _json({"event": "participant_joined", "room": {"name": "fuzz"}, "id": "EV_1"})
    bodies = [
        event,
        *RAW_BODIES,
        _json({"event": 5}),
        _json({"event": "room_started", "room": "not an object"}),
        _json({"event": "room_started", "unknown": {"x": 1}}),
        _json({"event": ["list"]}),
    ]
    for i, body in enumerate(bodies):
        for auth_name, auth in [
            ("no auth", None),
            ("garbage auth", "garbage"),
            ("wrong key", _webhook_token(("other", "other-secret-0123456789abcdef0123"), body)),
            ("wrong hash", _webhook_token(key, body, base64.b64encode(b"x" * 32).decode())),
            ("bad base64 hash", _webhook_token(key, body, "%%%not-base64")),
            ("signed", _webhook_token(key, body)),
        ]:
            headers = (("Authorization", auth),) if auth is not None else ()
            yield Case(f"/sfu_webhook body {i} {auth_name}", "POST", "/sfu_webhook", body, headers)


def _status_cases() -> Iterator[Case]:
    for value in [
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong",
        f"bearer {STATUS_TOKEN}",
        "Basic dXNlcjpwYXNz",
        f"Bearer {STATUS_TOKEN} extra",
        f"Bearer  {STATUS_TOKEN}",
        "Bearer " + "x" * 4000,
        f"Bearer {STATUS_TOKEN[:-1]}",
        f"Bearer {STATUS_TOKEN}",  # the right one
    ]:
        yield Case(
            f"/status Authorization {value[:40]!r}",
            "GET",
            "/status",
            None,
            (("Authorization", value),),
        )
    yield Case("/status without Authorization", "GET", "/status")


def _size_cases() -> Iterator[Case]:
    big = b"a" * TWO_MIB
    big_json = _json({"room_id": "!" + "x" * TWO_MIB})
    for path in PATHS:
        for chunked in (False, True):
            for label, body in (("2 MiB text", big), ("2 MiB JSON", big_json)):
                yield Case(
                    f"{path} POST {label} chunked={chunked}", "POST", path, body, (), chunked
                )


def _method_cases() -> Iterator[Case]:
    for path in PATHS:
        for method in METHODS:
            yield Case(f"{method} {path}", method, path)
    for path in ("/get_token/", "/sfu/get/extra", "/healthz?x=%ff%fe", "/metrics?%zz", "/nope"):
        yield Case(f"GET {path}", "GET", path)


def corpus(stack: Stack, room: str, user: MatrixUser, openid: dict[str, Any]) -> list[Case]:
    get_token = {
        "room_id": room,
        "slot_id": "m.call#ROOM",
        "openid_token": openid,
        "member": {
            "id": "fuzz-member",
            "claimed_user_id": user.user_id,
            "claimed_device_id": user.device_id,
        },
        "delay_id": "fuzz-delay",
        "delay_timeout": 8000,
    }
    sfu_get = {"room": room, "openid_token": openid, "device_id": user.device_id}
    # The /get_token fields with a delay (required here); a delegation of a leave that does
    # not exist: the job ends when the homeserver answers 404.
    delegate = {**get_token, "member": {**get_token["member"], "id": "fuzz-delegate"}}
    cases = [
        *_field_cases("/get_token", get_token),
        *_field_cases("/sfu/get", sfu_get),
        *_field_cases("/delegate_delayed_leave", delegate),
        *_webhook_cases(stack),
        *_status_cases(),
        *_size_cases(),
        *_method_cases(),
    ]
    # The valid requests first: every accepted delegation is a job, and a user may have only
    # MAX_JOBS_PER_USER of them (the variants after these meet that limit: a 400).
    return sorted(cases, key=lambda c: not c.name.endswith(" valid"))


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 64 * 1024):
        yield body[start : start + 64 * 1024]


async def _send(session: aiohttp.ClientSession, base: str, case: Case) -> int:
    url = URL(base + case.path, encoded=True)
    data: Any = None
    if case.body is not None:
        data = _chunks(case.body) if case.chunked else case.body
    headers = dict(case.headers)
    if case.body is not None and "Content-Type" not in headers:
        headers["Content-Type"] = "application/json"
    try:
        async with session.request(case.method, url, data=data, headers=headers) as resp:
            await resp.read()
            return resp.status
    except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
        return DISCONNECTED  # reported as such; only 2 MiB uploads may see it (asserted)


async def _raw_status(base: str, request: bytes) -> int:
    """Send bytes aiohttp's client would refuse (undecodable header bytes)."""
    url = URL(base)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(request)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 30)
        return int(line.split()[1])
    finally:
        writer.close()
        await writer.wait_closed()


async def test_fuzz_web_endpoints(
    stack: Stack, alice: MatrixUser, bot_room: str, bot_id: str
) -> None:
    openid = dict(
        await alice.request(Method.POST, Path.v3.user[alice.user_id].openid.request_token, {})
    )
    log = stack.maubot.child.log_path
    offset = log.stat().st_size
    cfg = stack.plugin_config()
    cfg["web"] = {"status_token": STATUS_TOKEN}
    # Hundreds of token requests from one IP in a few seconds: not what is tested here.
    cfg["auth_service"]["rate_limit_per_ip_burst"] = 100_000
    stack.maubot.put_instance("rtcbot", "dev.rtcbot", bot_id, json.dumps(cfg))
    results: dict[str, int] = {}
    try:
        cases = corpus(stack, bot_room, alice, openid)
        assert len({c.name for c in cases}) == len(cases), "case names must be unique"
        async with aiohttp.ClientSession() as session:
            for case in cases:
                results[case.name] = await _send(session, stack.auth_service_url, case)
        prefix = URL(stack.auth_service_url).raw_path
        for name, header in [
            ("undecodable bearer", b"Authorization: Bearer \xff\xfe\x80\r\n"),
            ("non-ASCII bearer", "Authorization: Bearer ünïcödé\r\n".encode()),
            ("undecodable content type", b"Content-Type: application/json; charset=\xff\r\n"),
        ]:
            for method, path in [
                ("GET", "/status"),
                ("POST", "/get_token"),
                ("POST", "/delegate_delayed_leave"),
                ("POST", "/sfu_webhook"),
            ]:
                request = (
                    f"{method} {prefix}{path} HTTP/1.1\r\nHost: localhost\r\n".encode()
                    + header
                    + b"Content-Length: 2\r\nConnection: close\r\n\r\n{}"
                )
                results[f"raw {name} {method} {path}"] = await _raw_status(
                    stack.auth_service_url, request
                )
    finally:
        stack.maubot.put_instance(
            "rtcbot", "dev.rtcbot", bot_id, json.dumps(stack.plugin_config())
        )

    server_errors = {name: status for name, status in results.items() if status >= 500}
    assert not server_errors, server_errors
    dropped = [name for name, status in results.items() if status == DISCONNECTED]
    assert all("2 MiB" in name for name in dropped), dropped
    # The corpus reached the interesting answers, not just one kind of refusal.
    statuses = set(results.values())
    assert {200, 400, 401, 403, 404, 405, 413} <= statuses, sorted(statuses)
    assert results["/get_token valid"] == 200 and results["/sfu/get valid"] == 200
    assert results["/delegate_delayed_leave valid"] == 200
    assert results["POST /delegate_delayed_leave"] == 400  # Element Call's probe: offered
    assert results["/delegate_delayed_leave without delay_id"] == 400
    assert results[f"/status Authorization {f'Bearer {STATUS_TOKEN}'[:40]!r}"] == 200
    assert results["/sfu_webhook body 0 signed"] == 200
    assert results["/get_token POST 2 MiB JSON chunked=True"] == 413
    assert results["/delegate_delayed_leave POST 2 MiB JSON chunked=False"] == 413
    assert results["/sfu_webhook POST 2 MiB text chunked=False"] == 413

    written = log.read_bytes()[offset:].decode("utf-8", "replace")
    assert "Auth service: refused" in written  # the plugin's log lines do land in this file
    assert "Traceback" not in written, written[written.index("Traceback") - 2000 :][:6000]
    assert "--- Logging error ---" not in written
    for secret in (openid["access_token"], STATUS_TOKEN, stack.secrets["livekit_api_secret"]):
        assert secret not in written
