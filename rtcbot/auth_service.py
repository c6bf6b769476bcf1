"""A MatrixRTC authorization service (the lk-jwt-service protocol) served from the plugin.

Clients POST an OpenID token; we verify it with the user's homeserver, and answer with the
LiveKit URL and a JWT for the room derived exactly as lk-jwt-service ≥ v0.4.3 does, so
Element Call and other clients can point `livekit_service_url` at the bot.

Least privilege, stricter than lk-jwt-service standalone:
- a token for a room the bot is in goes only to users joined to that room (403 otherwise);
  rooms without the bot follow `auth_service.rooms_without_bot` (default: refuse);
- only users of `full_access_homeservers` (default: the bot's own homeserver) create LiveKit
  rooms and publish; everyone else gets a subscribe-only token, as lk-jwt-service since #222;
- the OpenID token is checked at the server found by the federation discovery rules
  (matrix/server_discovery.py) unless `homeserver_urls` names the URL.

Secrets policy: the API secret, OpenID access tokens and issued JWTs are never logged.
Logs carry only the user id, the Matrix room, the LiveKit room and the outcome.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import aiohttp
from aiohttp import web
from livekit import api

from rtcbot.config import AuthServiceSettings
from rtcbot.matrix.room_members import Membership, MembershipUnknown, RoomMembers
from rtcbot.matrix.server_discovery import (
    FederationDiscovery,
    InvalidServerName,
    parse_server_name,
)
from rtcbot.rtc.identity import (
    DEFAULT_SLOT_ID,
    legacy_identity,
    livekit_identity,
    livekit_room_alias,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Endpoint = Literal["get_token", "sfu_get"]

JWT_TTL = timedelta(hours=1)
# Room settings lk-jwt-service uses: keep an empty room 5 min, a deserted one 20 s.
ROOM_EMPTY_TIMEOUT = 300
ROOM_DEPARTURE_TIMEOUT = 20
MAX_BODY_BYTES = 64 * 1024
_MAX_USERINFO_BYTES = 16 * 1024

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Accept, Authorization, Content-Type, Origin, X-Requested-With",
    "Access-Control-Max-Age": "86400",
}

_OPENID_FIELDS = frozenset({"access_token", "token_type", "matrix_server_name", "expires_in"})
_MEMBER_FIELDS = frozenset({"id", "claimed_user_id", "claimed_device_id"})
_DELAY_FIELDS = frozenset({"delay_id", "delay_timeout", "delay_cs_api_url"})
_GET_TOKEN_FIELDS = frozenset({"room_id", "slot_id", "openid_token", "member"}) | _DELAY_FIELDS
_SFU_GET_FIELDS = frozenset({"room", "openid_token", "device_id"}) | _DELAY_FIELDS

UNAUTHORISED_TEXT = "The request could not be authorised."
DISABLED_TEXT = "The authorization service is disabled in rtcbot's config"
NOT_A_MEMBER_TEXT = "The requesting user is not a member of the room"
BOT_NOT_IN_ROOM_TEXT = (
    "rtcbot is not in this room, and its authorization service only issues tokens for rooms "
    "it is in; invite the bot to the room"
)
RESTRICTED_NO_BOT_TEXT = (
    "rtcbot is not in this room, and its authorization service issues tokens for such rooms "
    "only to users of its full-access homeservers"
)


class RequestError(Exception):
    """Ends a request with a Matrix-style error body."""

    def __init__(self, status: int, errcode: str, error: str, *, reason: str = "") -> None:
        super().__init__(error)
        self.status = status
        self.errcode = errcode
        self.error = error
        # For our log only: why, in more detail than we tell the client.
        self.reason = reason or error


def _bad_json(error: str) -> RequestError:
    return RequestError(400, "M_BAD_JSON", error)


def _unauthorised(reason: str) -> RequestError:
    return RequestError(401, "M_UNAUTHORIZED", UNAUTHORISED_TEXT, reason=reason)


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


# -- strict body parsing ---------------------------------------------------------------------
def _printable(text: str) -> str:
    """Client text fit for an error message and a log line (no newlines, no controls)."""
    return "".join(c if c.isprintable() else "?" for c in text)


def _reject_unknown(obj: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(k for k in obj if k not in allowed)
    if unknown:
        name = _printable(unknown[0][:64])
        raise _bad_json(f"Unknown field `{where}{name}` in the request body")


def _require_room_id(obj: dict[str, Any], key: str) -> str:
    val = _require_str(obj, key)
    # Room IDs are `!opaque[:server]`, at most 255 bytes; checked before one is used in a
    # request to the homeserver or logged.
    if (
        not val.startswith("!")
        or any(c.isspace() or not c.isprintable() for c in val)  # also lone surrogates
        or len(val.encode("utf-8")) > 255
    ):
        raise _bad_json(f"`{key}` must be a Matrix room ID (starting with `!`)")
    return val


def _require_object(obj: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
    val = obj.get(key)
    if val is None:
        raise _bad_json(f"The request body is missing `{where}{key}`")
    if not isinstance(val, dict):
        raise _bad_json(f"`{where}{key}` must be a JSON object")
    return val


def _require_str(obj: dict[str, Any], key: str, where: str = "") -> str:
    val = obj.get(key)
    if val is None or val == "":
        raise _bad_json(f"The request body is missing `{where}{key}`")
    if not isinstance(val, str):
        raise _bad_json(f"`{where}{key}` must be a string")
    return val


def _optional_str(obj: dict[str, Any], key: str, where: str = "") -> str | None:
    val = obj.get(key)
    if val is None or val == "":
        return None
    if not isinstance(val, str):
        raise _bad_json(f"`{where}{key}` must be a string")
    return val


def _optional_int(obj: dict[str, Any], key: str) -> int | None:
    val = obj.get(key)
    if val is None:
        return None
    # bool is an int subclass in Python but not a JSON number.
    if isinstance(val, bool) or not isinstance(val, int):
        raise _bad_json(f"`{key}` must be a whole number of milliseconds")
    return val


def _parse_openid(body: dict[str, Any]) -> OpenIDToken:
    raw = _require_object(body, "openid_token")
    _reject_unknown(raw, _OPENID_FIELDS, "openid_token.")
    expires_in = raw.get("expires_in")
    if expires_in is not None and (
        isinstance(expires_in, bool) or not isinstance(expires_in, int)
    ):
        raise _bad_json("`openid_token.expires_in` must be a whole number")
    return OpenIDToken(
        access_token=_require_str(raw, "access_token", "openid_token."),
        token_type=_optional_str(raw, "token_type", "openid_token.") or "",
        matrix_server_name=_require_str(raw, "matrix_server_name", "openid_token."),
        expires_in=expires_in,
    )


def _parse_delay(body: dict[str, Any]) -> tuple[str | None, int | None]:
    _optional_str(body, "delay_cs_api_url")  # type-checked, otherwise ignored (as upstream)
    delay_id = _optional_str(body, "delay_id")
    delay_timeout = _optional_int(body, "delay_timeout")
    if delay_timeout is not None and delay_timeout <= 0:
        raise _bad_json("`delay_timeout` must be a positive number of milliseconds")
    if (delay_id is None) != (delay_timeout is None):
        raise _bad_json("`delay_id` and `delay_timeout` must be given together")
    return delay_id, delay_timeout


def parse_get_token(body: dict[str, Any]) -> TokenRequest:
    _reject_unknown(body, _GET_TOKEN_FIELDS, "")
    room_id = _require_room_id(body, "room_id")
    slot_id = _require_str(body, "slot_id")
    member = _require_object(body, "member")
    _reject_unknown(member, _MEMBER_FIELDS, "member.")
    member_id = _require_str(member, "id", "member.")
    claimed_user_id = _require_str(member, "claimed_user_id", "member.")
    claimed_device_id = _require_str(member, "claimed_device_id", "member.")
    openid = _parse_openid(body)
    delay_id, delay_timeout = _parse_delay(body)
    return TokenRequest(
        endpoint="get_token",
        room_id=room_id,
        slot_id=slot_id,
        openid=openid,
        device_id=claimed_device_id,
        member_id=member_id,
        claimed_user_id=claimed_user_id,
        delay_id=delay_id,
        delay_timeout=delay_timeout,
    )


def parse_sfu_get(body: dict[str, Any]) -> TokenRequest:
    _reject_unknown(body, _SFU_GET_FIELDS, "")
    room_id = _require_room_id(body, "room")
    device_id = _require_str(body, "device_id")
    openid = _parse_openid(body)
    delay_id, delay_timeout = _parse_delay(body)
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
    )


def full_access_servers(settings: AuthServiceSettings, own_server: str) -> tuple[str, ...]:
    """The configured list; empty means the bot's own homeserver only."""
    return settings.full_access_homeservers or ((own_server,) if own_server else ())


def is_full_access(server_name: str, servers: tuple[str, ...]) -> bool:
    server = server_name.lower()
    return any(e == "*" or e.lower() == server for e in servers)


def video_grants(alias: str, full_access: bool) -> api.VideoGrants:
    """Full access publishes; restricted users only subscribe (lk-jwt-service #222).

    False is written into the JWT explicitly: LiveKit reads a missing canPublish as true.
    """
    return api.VideoGrants(
        room_join=True,
        room=alias,
        room_create=False,
        can_publish=full_access,
        can_subscribe=True,
        can_publish_data=full_access,
        can_update_own_metadata=full_access,
    )


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status, headers=CORS_HEADERS)


def _error(err: RequestError) -> web.Response:
    return _json(err.status, {"errcode": err.errcode, "error": err.error})


def _too_large() -> RequestError:
    return RequestError(413, "M_TOO_LARGE", "The request body is too large")


class AuthService:
    """aiohttp handlers for `/healthz`, `/get_token` and `/sfu/get`."""

    def __init__(
        self,
        settings_getter: Callable[[], AuthServiceSettings],
        session: aiohttp.ClientSession,
        log: logging.Logger,
        *,
        http_timeout: float = 10.0,
        own_server: str = "",
        room_members: RoomMembers | None = None,
        discovery: FederationDiscovery | None = None,
    ) -> None:
        self._settings = settings_getter
        self._session = session
        self._log = log
        self._timeout = http_timeout
        self._own_server = own_server
        # Without a membership source every room counts as one the bot is not in.
        self._members = room_members
        self._discovery = discovery or FederationDiscovery(session, timeout=min(5.0, http_timeout))

    def routes(self) -> list[tuple[str, str, Handler]]:
        # UrlDispatcher.add_route (what PluginWebApp exposes) does not add HEAD for GET by
        # itself, and reverse-proxy health checks often use HEAD.
        # Any other method on the token endpoints: 405 with CORS, as lk-jwt-service.
        return [
            ("GET", "/healthz", self.healthz),
            ("HEAD", "/healthz", self.healthz),
            ("POST", "/get_token", self.get_token),
            ("OPTIONS", "/get_token", self.options),
            ("*", "/get_token", self.not_allowed),
            ("POST", "/sfu/get", self.sfu_get),
            ("OPTIONS", "/sfu/get", self.options),
            ("*", "/sfu/get", self.not_allowed),
            # Element Call probes for delegated delayed leave (lk-jwt-service offers it); until
            # rtcbot does, a 404 it can read (CORS), so it keeps its own timings.
            ("OPTIONS", "/delegate_delayed_leave", self.options),
            ("*", "/delegate_delayed_leave", self.not_offered),
        ]

    # -- handlers ----------------------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        if not self._settings().enabled:
            return _error(RequestError(404, "M_NOT_FOUND", DISABLED_TEXT))
        return _json(200, {"status": "ok"})

    async def options(self, request: web.Request) -> web.Response:
        if not self._settings().enabled:
            return _error(RequestError(404, "M_NOT_FOUND", DISABLED_TEXT))
        return web.Response(status=200, headers=CORS_HEADERS)

    async def not_allowed(self, request: web.Request) -> web.Response:
        headers = {**CORS_HEADERS, "Allow": "POST, OPTIONS"}
        body = {"errcode": "M_UNRECOGNIZED", "error": "Method not allowed: use POST"}
        return web.json_response(body, status=405, headers=headers)

    async def not_offered(self, request: web.Request) -> web.Response:
        body = {
            "errcode": "M_NOT_FOUND",
            "error": "Delegated delayed leave is not offered by this service",
        }
        return web.json_response(body, status=404, headers=CORS_HEADERS)

    async def get_token(self, request: web.Request) -> web.Response:
        return await self._handle(request, "get_token")

    async def sfu_get(self, request: web.Request) -> web.Response:
        return await self._handle(request, "sfu_get")

    # -- the token flow ----------------------------------------------------------------------
    async def _handle(self, request: web.Request, endpoint: Endpoint) -> web.Response:
        settings = self._settings()  # one snapshot per request, even if the config reloads
        if not settings.enabled:
            return _error(RequestError(404, "M_NOT_FOUND", DISABLED_TEXT))
        req: TokenRequest | None = None
        try:
            body = await self._read_body(request)
            req = parse_get_token(body) if endpoint == "get_token" else parse_sfu_get(body)
            return await self._issue(req, settings)
        except RequestError as err:
            self._log_refusal(endpoint, req, err)
            return _error(err)
        except Exception as exc:
            # Only the type and frames: an exception's text could quote a request URL
            # carrying the OpenID token.
            frames = "".join(traceback.format_tb(exc.__traceback__))
            self._log.error(
                "Auth service: unexpected %s while handling %s\n%s",
                type(exc).__name__,
                endpoint,
                frames,
            )
            return _error(RequestError(500, "M_UNKNOWN", "Internal server error"))

    async def _read_body(self, request: web.Request) -> dict[str, Any]:
        raw = await read_limited(request, MAX_BODY_BYTES)
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise RequestError(400, "M_NOT_JSON", "Error reading request") from None
        if not isinstance(body, dict):
            raise _bad_json("The request body must be a JSON object")
        try:
            # JSON may spell lone surrogates ("\ud800"), which are not Unicode: they would
            # break the first encode (a URL, a log file) far from here.
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except (UnicodeEncodeError, RecursionError):
            raise RequestError(400, "M_NOT_JSON", "Error reading request") from None
        return body

    async def _issue(self, req: TokenRequest, settings: AuthServiceSettings) -> web.Response:
        if not (settings.livekit_url and settings.api_key and settings.api_secret):
            raise RequestError(
                500,
                "M_UNKNOWN",
                "The authorization service has no LiveKit URL or API key configured",
            )
        user_id = await self._verify_openid(req.openid, settings)
        if req.claimed_user_id is not None and req.claimed_user_id != user_id:
            raise _unauthorised(
                f"member.claimed_user_id {req.claimed_user_id!r} is not the token's owner "
                f"{user_id}"
            )
        if req.endpoint == "get_token":
            assert req.member_id is not None
            alias = livekit_room_alias(req.room_id, req.slot_id)
            identity = livekit_identity(user_id, req.device_id, req.member_id)
        else:
            alias = livekit_room_alias(req.room_id, DEFAULT_SLOT_ID)
            identity = legacy_identity(user_id, req.device_id)

        full_access = is_full_access(
            req.openid.matrix_server_name, full_access_servers(settings, self._own_server)
        )
        await self._check_room(req.room_id, user_id, full_access, settings)
        if full_access:
            await self._create_room(alias, settings)
        if req.delay_id is not None:
            # Delegated delayed leave is not implemented; like lk-jwt-service v0.5.0 we
            # accept the fields and leave the heartbeat to the client.
            self._log.debug("Auth service: ignoring delayed-leave delegation from %s", user_id)

        jwt = (
            api.AccessToken(settings.api_key, settings.api_secret)
            .with_identity(identity)
            .with_ttl(JWT_TTL)
            .with_grants(video_grants(alias, full_access))
            .to_jwt()
        )
        self._log.info(
            "Auth service: issued a LiveKit token to %s for %s via %s "
            "(LiveKit room %s, %s access)",
            user_id,
            req.room_id,
            "/get_token" if req.endpoint == "get_token" else "/sfu/get",
            alias,
            "full" if full_access else "restricted",
        )
        return _json(200, {"url": settings.livekit_url, "jwt": jwt})

    async def _verify_openid(self, token: OpenIDToken, settings: AuthServiceSettings) -> str:
        """Return the Matrix user id the token belongs to, or raise 401."""
        server = token.matrix_server_name
        try:
            parse_server_name(server)
            base = settings.homeserver_urls.get(server) or await self._discovery.base_url(server)
        except InvalidServerName:
            raise _unauthorised(
                f"matrix_server_name {server[:64]!r} is not a valid server name"
            ) from None
        url = f"{base.rstrip('/')}/_matrix/federation/v1/openid/userinfo"
        try:
            async with self._session.get(
                url,
                params={"access_token": token.access_token},
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                allow_redirects=False,
            ) as resp:
                status = resp.status
                raw = await resp.content.read(_MAX_USERINFO_BYTES)
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The exception text may contain the request URL, and so the token: type only.
            raise _unauthorised(
                f"could not reach {base} to check the OpenID token ({type(exc).__name__})"
            ) from None
        if status != 200:
            raise _unauthorised(f"{base} answered {status} to the OpenID userinfo request")
        try:
            info = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise _unauthorised(f"{base} sent a userinfo answer that is not JSON") from None
        sub = info.get("sub") if isinstance(info, dict) else None
        if (
            not isinstance(sub, str)
            or not sub.startswith("@")
            or ":" not in sub
            or len(sub) > 255
            or any(c.isspace() or not c.isprintable() for c in sub)
        ):
            raise _unauthorised(f"{base} sent a userinfo answer without a valid user id")
        if sub.split(":", 1)[1] != server:
            raise _unauthorised(f"{base} vouched for {sub}, who does not belong to {server}")
        return sub

    async def _check_room(
        self, room_id: str, user_id: str, full_access: bool, settings: AuthServiceSettings
    ) -> None:
        """Joined members of rooms with the bot; the configured policy for the others."""
        state = Membership.BOT_NOT_IN_ROOM
        if self._members is not None:
            try:
                state = await self._members.membership(room_id, user_id)
            except MembershipUnknown as e:
                raise RequestError(
                    502,
                    "M_UNKNOWN",
                    "Unable to check the room membership",
                    reason=f"asking the homeserver who is joined to {room_id} failed: {e}",
                ) from None
        if state is Membership.JOINED:
            return
        if state is Membership.NOT_JOINED:
            raise RequestError(
                403,
                "M_FORBIDDEN",
                NOT_A_MEMBER_TEXT,
                reason=f"{user_id} is not joined to {room_id}",
            )
        policy = settings.rooms_without_bot
        if policy == "any_user" or (policy == "full_access" and full_access):
            return
        text = RESTRICTED_NO_BOT_TEXT if policy == "full_access" else BOT_NOT_IN_ROOM_TEXT
        raise RequestError(
            403,
            "M_FORBIDDEN",
            text,
            reason=f"the bot is not in {room_id} (rooms_without_bot: {policy})",
        )

    async def _create_room(self, alias: str, settings: AuthServiceSettings) -> None:
        # CreateRoom is idempotent on LiveKit: an existing room is returned unchanged.
        lkapi = api.LiveKitAPI(
            settings.livekit_url,
            settings.api_key,
            settings.api_secret,
            session=self._session,
            failover=False,
        )
        try:
            async with asyncio.timeout(self._timeout):
                await lkapi.room.create_room(
                    api.CreateRoomRequest(
                        name=alias,
                        empty_timeout=ROOM_EMPTY_TIMEOUT,
                        departure_timeout=ROOM_DEPARTURE_TIMEOUT,
                    )
                )
        except Exception as exc:
            detail = type(exc).__name__
            if isinstance(exc, api.ServerError):  # twirp errors carry no credentials
                detail = f"{detail} {exc.status} {exc.code}: {exc.message}"
            raise RequestError(
                500,
                "M_UNKNOWN",
                "Unable to create room on SFU",
                reason=f"creating LiveKit room {alias} at {settings.livekit_url} failed: {detail}",
            ) from None
        finally:
            await lkapi.aclose()

    def _log_refusal(
        self, endpoint: Endpoint, req: TokenRequest | None, err: RequestError
    ) -> None:
        path = "/get_token" if endpoint == "get_token" else "/sfu/get"
        who = ""
        if req is not None:
            claimed = req.claimed_user_id or f"a user of {req.openid.matrix_server_name}"
            who = f" for claimed user {claimed!r} in {req.room_id!r}"
        level = logging.WARNING if err.status >= 500 or err.status == 401 else logging.INFO
        self._log.log(
            level, "Auth service: refused %s%s: %s %s", path, who, err.status, err.reason
        )


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The request body, or RequestError 413 past `limit` bytes (never more is buffered).

    maubot's server allows 100 MiB bodies, so `request.read()` alone would buffer that much
    from a chunked upload that announced no length.
    """
    if request.content_length is not None and request.content_length > limit:
        raise _too_large()
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
        raise _too_large()
    return b"".join(chunks)
