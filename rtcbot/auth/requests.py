"""The authorization service's request bodies: read with a size limit, parsed strictly.

lk-jwt-service's fields for `/get_token`, `/sfu/get` and `/delegate_delayed_leave`, with
stricter types: unknown fields, wrong types and malformed IDs are a 400 that names the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from aiohttp import web

from rtcbot.rtc.identity import DEFAULT_SLOT_ID

Endpoint = Literal["get_token", "sfu_get", "delegate"]

PATHS: dict[Endpoint, str] = {
    "get_token": "/get_token",
    "sfu_get": "/sfu/get",
    "delegate": "/delegate_delayed_leave",
}

MAX_BODY_BYTES = 64 * 1024
# Synapse's delay ids are "syd_" + 20 letters; a week is beyond any homeserver's maximum.
MAX_DELAY_ID_CHARS = 255
MAX_DELAY_TIMEOUT_MS = 7 * 86_400_000
# A delegated leave is restarted every 80 % of its delay on the homeserver's per-IP budget
# (`rc_delayed_event_mgmt`, 1/s by default) shared by every user: tiny delays would spend it.
MIN_DELAY_TIMEOUT_MS = 5000
MAX_DEVICE_ID_CHARS = 255

_OPENID_FIELDS = frozenset({"access_token", "token_type", "matrix_server_name", "expires_in"})
_MEMBER_FIELDS = frozenset({"id", "claimed_user_id", "claimed_device_id"})
_DELAY_FIELDS = frozenset({"delay_id", "delay_timeout", "delay_cs_api_url"})
_GET_TOKEN_FIELDS = frozenset({"room_id", "slot_id", "openid_token", "member"}) | _DELAY_FIELDS
_SFU_GET_FIELDS = frozenset({"room", "openid_token", "device_id"}) | _DELAY_FIELDS


class RequestError(Exception):
    """Ends a request with a Matrix-style error body."""

    def __init__(self, status: int, errcode: str, error: str, *, reason: str = "") -> None:
        super().__init__(error)
        self.status = status
        self.errcode = errcode
        self.error = error
        # For our log only: why, in more detail than we tell the client.
        self.reason = reason or error


def bad_json(error: str) -> RequestError:
    return RequestError(400, "M_BAD_JSON", error)


@dataclass(frozen=True)
class OpenIDToken:
    access_token: str
    token_type: str
    matrix_server_name: str
    expires_in: int | None

    def __repr__(self) -> str:  # never show the access token
        return f"OpenIDToken(matrix_server_name={self.matrix_server_name!r})"


@dataclass(frozen=True)
class TokenRequest:
    """A validated `/get_token` or `/sfu/get` body."""

    endpoint: Endpoint
    room_id: str
    slot_id: str
    openid: OpenIDToken
    device_id: str
    member_id: str | None  # /get_token only
    claimed_user_id: str | None  # /get_token only
    delay_id: str | None
    delay_timeout: int | None
    delay_cs_api_url: str | None  # checked for type, logged, never used

    def __repr__(self) -> str:  # never show the OpenID token or the delay id
        return f"TokenRequest({self.endpoint}, {self.room_id!r}, {self.claimed_user_id!r})"


# -- strict body parsing ---------------------------------------------------------------------
def printable(text: str) -> str:
    """Client text fit for an error message and a log line (no newlines, no controls)."""
    return "".join(c if c.isprintable() else "?" for c in text)


def _reject_unknown(obj: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(k for k in obj if k not in allowed)
    if unknown:
        name = printable(unknown[0][:64])
        raise bad_json(f"Unknown field `{where}{name}` in the request body")


def _require_room_id(obj: dict[str, Any], key: str) -> str:
    val = _require_str(obj, key)
    # Room IDs are `!opaque[:server]`, at most 255 bytes; checked before one is used in a
    # request to the homeserver or logged.
    if (
        not val.startswith("!")
        or any(c.isspace() or not c.isprintable() for c in val)  # also lone surrogates
        or len(val.encode("utf-8")) > 255
    ):
        raise bad_json(f"`{key}` must be a Matrix room ID (starting with `!`)")
    return val


def _require_device_id(obj: dict[str, Any], key: str, where: str = "") -> str:
    val = _require_str(obj, key, where)
    # It becomes part of the LiveKit identity and of log lines: no line breaks or controls.
    if len(val) > MAX_DEVICE_ID_CHARS or any(c.isspace() or not c.isprintable() for c in val):
        raise bad_json(f"`{where}{key}` must be a device id (printable, no spaces)")
    return val


def _require_object(obj: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
    val = obj.get(key)
    if val is None:
        raise bad_json(f"The request body is missing `{where}{key}`")
    if not isinstance(val, dict):
        raise bad_json(f"`{where}{key}` must be a JSON object")
    return val


def _require_str(obj: dict[str, Any], key: str, where: str = "") -> str:
    val = obj.get(key)
    if val is None or val == "":
        raise bad_json(f"The request body is missing `{where}{key}`")
    if not isinstance(val, str):
        raise bad_json(f"`{where}{key}` must be a string")
    return val


def _optional_str(obj: dict[str, Any], key: str, where: str = "") -> str | None:
    val = obj.get(key)
    if val is None or val == "":
        return None
    if not isinstance(val, str):
        raise bad_json(f"`{where}{key}` must be a string")
    return val


def _optional_int(obj: dict[str, Any], key: str) -> int | None:
    val = obj.get(key)
    if val is None:
        return None
    # bool is an int subclass in Python but not a JSON number.
    if isinstance(val, bool) or not isinstance(val, int):
        raise bad_json(f"`{key}` must be a whole number of milliseconds")
    return val


def _parse_openid(body: dict[str, Any]) -> OpenIDToken:
    raw = _require_object(body, "openid_token")
    _reject_unknown(raw, _OPENID_FIELDS, "openid_token.")
    expires_in = raw.get("expires_in")
    if expires_in is not None and (
        isinstance(expires_in, bool) or not isinstance(expires_in, int)
    ):
        raise bad_json("`openid_token.expires_in` must be a whole number")
    return OpenIDToken(
        access_token=_require_str(raw, "access_token", "openid_token."),
        token_type=_optional_str(raw, "token_type", "openid_token.") or "",
        matrix_server_name=_require_str(raw, "matrix_server_name", "openid_token."),
        expires_in=expires_in,
    )


def _parse_delay(
    body: dict[str, Any], required: bool = False
) -> tuple[str | None, int | None, str | None]:
    cs_api_url = _optional_str(body, "delay_cs_api_url")  # never used (lk-jwt-service #188)
    delay_id = _optional_str(body, "delay_id")
    delay_timeout = _optional_int(body, "delay_timeout")
    if required and delay_id is None:
        raise bad_json("The request body is missing `delay_id`")
    if required and delay_timeout is None:
        raise bad_json("The request body is missing `delay_timeout`")
    if delay_timeout is not None and not (
        MIN_DELAY_TIMEOUT_MS <= delay_timeout <= MAX_DELAY_TIMEOUT_MS
    ):
        raise bad_json(
            f"`delay_timeout` must be at least {MIN_DELAY_TIMEOUT_MS} and at most "
            f"{MAX_DELAY_TIMEOUT_MS} milliseconds"
        )
    if (delay_id is None) != (delay_timeout is None):
        raise bad_json("`delay_id` and `delay_timeout` must be given together")
    if delay_id is not None and (
        len(delay_id) > MAX_DELAY_ID_CHARS
        or any(c.isspace() or not c.isprintable() for c in delay_id)
    ):
        raise bad_json("`delay_id` is not a delay id")
    return delay_id, delay_timeout, cs_api_url


def parse_get_token(body: dict[str, Any], endpoint: Endpoint = "get_token") -> TokenRequest:
    """A `/get_token` body; for `/delegate_delayed_leave` (the same fields) the delay is
    required."""
    _reject_unknown(body, _GET_TOKEN_FIELDS, "")
    room_id = _require_room_id(body, "room_id")
    slot_id = _require_str(body, "slot_id")
    member = _require_object(body, "member")
    _reject_unknown(member, _MEMBER_FIELDS, "member.")
    member_id = _require_str(member, "id", "member.")
    claimed_user_id = _require_str(member, "claimed_user_id", "member.")
    claimed_device_id = _require_device_id(member, "claimed_device_id", "member.")
    openid = _parse_openid(body)
    delay_id, delay_timeout, cs_api_url = _parse_delay(body, required=endpoint == "delegate")
    return TokenRequest(
        endpoint=endpoint,
        room_id=room_id,
        slot_id=slot_id,
        openid=openid,
        device_id=claimed_device_id,
        member_id=member_id,
        claimed_user_id=claimed_user_id,
        delay_id=delay_id,
        delay_timeout=delay_timeout,
        delay_cs_api_url=cs_api_url,
    )


def parse_sfu_get(body: dict[str, Any]) -> TokenRequest:
    _reject_unknown(body, _SFU_GET_FIELDS, "")
    room_id = _require_room_id(body, "room")
    device_id = _require_device_id(body, "device_id")
    openid = _parse_openid(body)
    delay_id, delay_timeout, cs_api_url = _parse_delay(body)
    return TokenRequest(
        endpoint="sfu_get",
        room_id=room_id,
        slot_id=DEFAULT_SLOT_ID,
        openid=openid,
        device_id=device_id,
        member_id=None,
        claimed_user_id=None,
        delay_id=delay_id,
        delay_timeout=delay_timeout,
        delay_cs_api_url=cs_api_url,
    )


require_room_id = _require_room_id
require_device_id = _require_device_id


def too_large() -> RequestError:
    return RequestError(413, "M_TOO_LARGE", "The request body is too large")


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The request body, or RequestError 413 past `limit` bytes (never more is buffered).

    maubot's server allows 100 MiB bodies, so `request.read()` alone would buffer that much
    from a chunked upload that announced no length.
    """
    if request.content_length is not None and request.content_length > limit:
        raise too_large()
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= limit:
            chunk = await request.content.read(limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except aiohttp.ClientPayloadError:  # a broken chunked or compressed body
        raise RequestError(400, "M_NOT_JSON", "Error reading request") from None
    if size > limit:
        raise too_large()
    return b"".join(chunks)
