"""rtcbot's authorization service as an MSC4512 application service (opt-in).

Synapse ≥ 1.161 with `experimental_features.msc4512_enabled` proxies
`/_matrix/client/(unstable/<ns>|vN)/rtc/livekit/*` to the application service registered
with `io.element.msc4512.proxy_prefix: rtc/livekit`, adding `Authorization: Bearer
<hs_token>` and `X-Matrix-User-Identifier` (the user its access token belongs to). Element
Call ≥ 0.28 gets its token there whenever a transport has `url`, and so does the bot.

The same least privilege as the OpenID endpoints (auth/service.py): joined members of rooms
with the bot, `rooms_without_bot` for the others, full access (create rooms, publish) for
the users of `full_access_homeservers` only, a token bucket per user. Only the homeserver
may call: the `hs_token` is compared in constant time, and without one configured nothing
here answers but 404. Tokens are only for this service's own SFU (`url` must be
`auth_service.livekit_url`) and for its own homeserver's users; another `server_name` is
refused (no federation).

Identity: a session membership (`member.id` is `user:device`, what js-sdk writes as the
`membershipID` of state events) gets `user:device`, which every client matches such members
against; any other member id the MSC4195 hash of (user, device, member id).
"""

from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web
from livekit import api

from ..rtc.identity import legacy_identity, livekit_identity, livekit_room_alias
from ..rtc.member_fields import is_user_id
from ..rtc.rate_limit import KeyedLimiter
from ..rtc.sfus import same_sfu
from .policy import (
    JWT_TTL,
    error_answer,
    full_access_servers,
    is_full_access,
    json_answer,
    rate_limited,
    video_grants,
)
from .requests import MAX_BODY_BYTES, RequestError, bad_json, printable, read_limited
from .requests import require_device_id as _device
from .requests import require_room_id as _room
from .settings import AuthServiceSettings

if TYPE_CHECKING:
    from .service import AuthService

PREFIX = r"/_matrix/client/{version:(?:unstable/[^/]+|v[0-9]+)}/rtc/livekit"
_FIELDS = frozenset({"room_id", "slot_id", "url", "member", "member_id", "server_name"})
_MEMBER_FIELDS = frozenset({"id", "claimed_device_id", "claimed_user_id"})
NOT_OFFERED = "rtcbot's authorization service is not set up as an application service"


class HomeserverTokenRequest:
    """A validated `rtc/livekit/get_token` body (js-sdk 43 `LivekitGetTokenRequest`; the
    flat `member_id` of Element Call's newer `csApi.ts` is read too)."""

    def __init__(self, body: dict[str, Any]) -> None:
        unknown = sorted(k for k in body if k not in _FIELDS)
        if unknown:
            raise bad_json(f"Unknown field `{printable(unknown[0][:64])}` in the request body")
        self.room_id = _room(body, "room_id")
        slot = body.get("slot_id", "m.call#ROOM")
        if not isinstance(slot, str) or not slot or len(slot) > 255 or slot.count("#") != 1:
            raise bad_json("`slot_id` must be <application>#<id>")
        self.slot_id = slot
        url = body.get("url")
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise bad_json("`url` must be the SFU's WebSocket URL")
        self.url = url
        server = body.get("server_name")
        if server is not None and not isinstance(server, str):
            raise bad_json("`server_name` must be a string")
        self.server_name = server or None
        member = body.get("member", {})
        if not isinstance(member, dict):
            raise bad_json("`member` must be a JSON object")
        unknown = sorted(k for k in member if k not in _MEMBER_FIELDS)
        if unknown:
            raise bad_json(f"Unknown field `member.{printable(unknown[0][:64])}`")
        member_id = member.get("id", body.get("member_id"))
        if not isinstance(member_id, str) or not member_id or len(member_id) > 255:
            raise bad_json("The request body is missing `member.id`")
        self.member_id = member_id
        self.device_id = _device(member, "claimed_device_id", "member.")


class HomeserverTokens:
    """The handlers Synapse's MSC4512 proxy reaches; they share AuthService's room checks."""

    def __init__(self, service: AuthService, own_server: str) -> None:
        self.service = service
        self.own_server = own_server
        self._limiter: KeyedLimiter | None = None

    def routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("POST", f"{PREFIX}/get_token", self.get_token),
            ("*", f"{PREFIX}/{{rest:.*}}", self.unknown),
        ]

    async def unknown(self, request: web.Request) -> web.Response:
        # delegate_delayed_leave and anything newer: "not supported", which clients read
        # as "do it yourself" (js-sdk falls back to restarting its own delayed leave).
        return error_answer(RequestError(404, "M_UNRECOGNIZED", "Unrecognized request"))

    def _caller(self, request: web.Request, settings: AuthServiceSettings) -> str:
        """The user Synapse vouches for, once the request proved it comes from Synapse."""
        expected = settings.appservice_hs_token
        if not settings.enabled or not expected:
            raise RequestError(404, "M_UNRECOGNIZED", NOT_OFFERED)
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
            raise RequestError(
                401, "M_UNKNOWN_TOKEN", "Unknown homeserver token", reason="wrong hs_token"
            )
        user_id = request.headers.get("X-Matrix-User-Identifier", "")
        if not is_user_id(user_id):
            raise bad_json("X-Matrix-User-Identifier must be a user ID")
        return user_id

    def _throttled(self, user_id: str, settings: AuthServiceSettings) -> float:
        rate, burst = settings.rate_limit_per_ip_per_s, settings.rate_limit_per_ip_burst
        if self._limiter is None or (self._limiter.rate, self._limiter.burst) != (rate, burst):
            self._limiter = KeyedLimiter(rate, burst)
        return self._limiter.take(user_id, self.service.now())

    async def get_token(self, request: web.Request) -> web.Response:
        settings = self.service.settings()
        user_id = ""
        try:
            user_id = self._caller(request, settings)
            try:
                body = json.loads((await read_limited(request, MAX_BODY_BYTES)).decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                raise RequestError(400, "M_NOT_JSON", "Error reading request") from None
            if not isinstance(body, dict):
                raise bad_json("The request body must be a JSON object")
            req = HomeserverTokenRequest(body)
            wait = self._throttled(user_id, settings)
            if wait > 0:
                return rate_limited(wait)
            return await self._issue(req, user_id, settings)
        except RequestError as err:
            self.service.log_refusal("rtc/livekit/get_token", user_id, err)
            return error_answer(err)

    async def _issue(
        self, req: HomeserverTokenRequest, user_id: str, settings: AuthServiceSettings
    ) -> web.Response:
        if req.server_name is not None and req.server_name != self.own_server:
            raise RequestError(
                400,
                "M_INVALID_PARAM",
                "This service issues tokens for its own homeserver's SFU only",
                reason=f"server_name {printable(req.server_name[:80])!r} (no federation)",
            )
        if not same_sfu(req.url, settings.livekit_url):
            raise RequestError(
                400,
                "M_INVALID_PARAM",
                "`url` is not this service's SFU",
                reason=f"url {printable(req.url[:120])!r} is not {settings.livekit_url}",
            )
        server = user_id.partition(":")[2]
        full_access = is_full_access(server, full_access_servers(settings, self.own_server))
        await self.service.check_room(req.room_id, user_id, full_access, settings)
        alias = livekit_room_alias(req.room_id, req.slot_id)
        if req.member_id == legacy_identity(user_id, req.device_id):
            identity = legacy_identity(user_id, req.device_id)
        else:
            identity = livekit_identity(user_id, req.device_id, req.member_id)
        if full_access:
            await self.service.create_room(alias, settings)
        jwt = (
            api.AccessToken(settings.api_key, settings.api_secret)
            .with_identity(identity)
            .with_ttl(JWT_TTL)
            .with_grants(video_grants(alias, full_access))
            .to_jwt()
        )
        self.service.log.info(
            "Auth service: issued a LiveKit token to %s for %s via the homeserver "
            "(LiveKit room %s, %s access)",
            user_id,
            req.room_id,
            alias,
            "full" if full_access else "restricted",
        )
        return json_answer(200, {"jwt": jwt})
