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

Delegated delayed leave (`/delegate_delayed_leave`, or `delay_id` + `delay_timeout` on the
token endpoints) as lk-jwt-service: full-access users only (400 on the token endpoints, 403
on `/delegate_delayed_leave` for the others); the job is keyed by the LiveKit room and the
identity the endpoint derives and run by auth/delegations.py. `delay_cs_api_url` is never used.

Facing anonymous callers (docs/DEPLOYMENT.md, "The authorization service in public"): a
token bucket per client IP (429 once the body is sound, before anything goes out); the OpenID
check and its well-known lookup on their own guarded client (net/outbound.py), and LiveKit's
API (CreateRoom) on a session of its own, never the Matrix client's connections; the bot's own account refused unless the bot itself sent the
token here (net/own_token.py).

Request bodies are read and parsed in auth/requests.py.

Secrets policy: the API secret, OpenID access tokens, issued JWTs and delay ids are never
logged. Logs carry only the user id, the Matrix room, the LiveKit room and the outcome.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from livekit import api

from rtcbot.auth.openid import OpenIdCheck
from rtcbot.auth.policy import (
    BOT_NOT_IN_ROOM_TEXT,
    CORS_HEADERS,
    DISABLED_TEXT,
    JWT_TTL,
    NOT_A_MEMBER_TEXT,
    OWN_ACCOUNT_TEXT,
    REFUSED_DELEGATION,
    RESTRICTED_DELEGATION_TEXT,
    RESTRICTED_NO_BOT_TEXT,
    ROOM_DEPARTURE_TIMEOUT,
    ROOM_EMPTY_TIMEOUT,
    error_answer,
    full_access_servers,
    is_full_access,
    json_answer,
    rate_limited,
    unauthorised,
    video_grants,
)
from rtcbot.auth.requests import (
    MAX_BODY_BYTES,
    PATHS,
    Endpoint,
    RequestError,
    TokenRequest,
    bad_json,
    parse_get_token,
    parse_sfu_get,
    printable,
    read_limited,
)
from rtcbot.auth.settings import AuthServiceSettings
from rtcbot.matrix.room_members import Membership, MembershipUnknown, RoomMembers
from rtcbot.matrix.server_discovery import (
    FederationDiscovery,
)
from rtcbot.net.outbound import (
    GuardedClient,
    anonymous_callers_client,
    authority_of,
    sfu_api_client,
)
from rtcbot.net.own_token import normal_url, sent_to
from rtcbot.rtc.client_address import client_key, proxy_networks
from rtcbot.rtc.identity import (
    DEFAULT_SLOT_ID,
    legacy_identity,
    livekit_identity,
    livekit_room_alias,
)
from rtcbot.rtc.leave_request import DelegationRefused, LeaveRequest
from rtcbot.rtc.rate_limit import KeyedLimiter

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Hands a verified delegation to the job manager; raises DelegationRefused.
Delegate = Callable[[LeaveRequest], Awaitable[None]]


class AuthService:
    """aiohttp handlers for `/healthz`, `/get_token`, `/sfu/get`, `/delegate_delayed_leave`."""

    def __init__(
        self,
        settings_getter: Callable[[], AuthServiceSettings],
        session: aiohttp.ClientSession | None,
        log: logging.Logger,
        *,
        http_timeout: float = 10.0,
        own_server: str = "",
        own_user_id: str = "",
        own_homeserver_url: str = "",
        own_service_url: str = "",
        room_members: RoomMembers | None = None,
        discovery: FederationDiscovery | None = None,
        outbound: GuardedClient | None = None,
        delegate: Delegate | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings_getter
        # LiveKit's API (CreateRoom): None, a session of its own (net/outbound.py), so that
        # callers holding it cannot hold the Matrix client's connections.
        self._sfu_api = sfu_api_client(lambda: self._settings().livekit_url)
        self._session = session
        self._log = log
        self._timeout = http_timeout
        self._own_server = own_server
        self._own_user_id = own_user_id
        self._own_homeserver_url = own_homeserver_url
        # This service's public URL (maubot's webapp URL): the bot's own token is accepted
        # only if the bot sent it here (net/own_token.py).
        self._own_service_url = normal_url(own_service_url) if own_service_url else ""
        self._clock = clock
        # Without a membership source every room counts as one the bot is not in.
        self._members = room_members
        self._outbound = outbound or anonymous_callers_client(
            self._trusted_hosts, timeout=min(5.0, http_timeout)
        )
        self._discovery = discovery or FederationDiscovery(
            self._outbound, timeout=min(3.0, http_timeout)
        )
        self._openid = OpenIdCheck(self._outbound, self._discovery, http_timeout)
        self._limiter: KeyedLimiter | None = None
        # Without a job manager delegation is not offered (the probe gets a 404).
        self._delegate = delegate

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
            # Element Call probes with an empty POST: anything but a 404 means "offered" and
            # makes it hand its delayed leave over (and relax its own timings).
            ("POST", "/delegate_delayed_leave", self.delegate_delayed_leave),
            ("OPTIONS", "/delegate_delayed_leave", self.options),
            ("*", "/delegate_delayed_leave", self.delegate_other),
        ]

    async def close(self) -> None:
        await self._outbound.close()
        await self._sfu_api.close()

    def _trusted_hosts(self) -> list[str]:
        """`host:port`s the OpenID checks may reach on private addresses: the bot's own
        homeserver and every server the config names."""
        s = self._settings()
        urls = [self._own_homeserver_url, *s.homeserver_urls.values(), *s.client_api_urls.values()]
        return [authority_of(u) for u in urls if u]

    def _sent_here(self, access_token: str) -> bool:
        """Did the bot itself send this token of its own to this very service?"""
        return bool(self._own_service_url) and sent_to(access_token) == self._own_service_url

    def _client_ip(self, request: web.Request, settings: AuthServiceSettings) -> str:
        """The peer's key; behind a configured proxy, that of the address the proxy saw (the
        last one it appended to X-Forwarded-For), parsed (rtc/client_address.py)."""
        return client_key(
            request.remote or "",
            request.headers.get("X-Forwarded-For", ""),
            proxy_networks(settings.trusted_proxies),
        )

    def _throttled(self, request: web.Request, settings: AuthServiceSettings) -> float:
        """Seconds this client must wait (0.0: go on, one request spent)."""
        rate, burst = settings.rate_limit_per_ip_per_s, settings.rate_limit_per_ip_burst
        if self._limiter is None or (self._limiter.rate, self._limiter.burst) != (rate, burst):
            self._limiter = KeyedLimiter(rate, burst)
        return self._limiter.take(self._client_ip(request, settings), self._clock())

    # What auth/homeserver_tokens.py shares: the settings, the clock, the log.
    def settings(self) -> AuthServiceSettings:
        return self._settings()

    def now(self) -> float:
        return self._clock()

    @property
    def log(self) -> logging.Logger:
        return self._log

    def log_refusal(self, path: str, user_id: str, err: RequestError) -> None:
        level = logging.WARNING if err.status >= 500 or err.status == 401 else logging.INFO
        who = f" for {user_id}" if user_id else ""
        self._log.log(
            level, "Auth service: refused %s%s: %s %s", path, who, err.status, err.reason
        )

    def offers_delegation(self, settings: AuthServiceSettings) -> bool:
        return settings.delegate_delayed_leave and self._delegate is not None

    # -- handlers ----------------------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        if not self._settings().enabled:
            return error_answer(RequestError(404, "M_NOT_FOUND", DISABLED_TEXT))
        return json_answer(200, {"status": "ok"})

    async def options(self, request: web.Request) -> web.Response:
        if not self._settings().enabled:
            return error_answer(RequestError(404, "M_NOT_FOUND", DISABLED_TEXT))
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

    async def delegate_other(self, request: web.Request) -> web.Response:
        if self.offers_delegation(self._settings()):
            return await self.not_allowed(request)
        return await self.not_offered(request)

    async def delegate_delayed_leave(self, request: web.Request) -> web.Response:
        settings = self._settings()
        if settings.enabled and not self.offers_delegation(settings):
            return await self.not_offered(request)
        return await self._handle(request, "delegate")

    async def get_token(self, request: web.Request) -> web.Response:
        return await self._handle(request, "get_token")

    async def sfu_get(self, request: web.Request) -> web.Response:
        return await self._handle(request, "sfu_get")

    # -- the token flow ----------------------------------------------------------------------
    async def _handle(self, request: web.Request, endpoint: Endpoint) -> web.Response:
        settings = self._settings()  # one snapshot per request, even if the config reloads
        if not settings.enabled:
            return error_answer(RequestError(404, "M_NOT_FOUND", DISABLED_TEXT))
        req: TokenRequest | None = None
        try:
            body = await self._read_body(request)
            req = parse_sfu_get(body) if endpoint == "sfu_get" else parse_get_token(body, endpoint)
            # Counted once the body is sound: from here on a request costs outbound requests.
            wait = self._throttled(request, settings)
            if wait > 0:
                return rate_limited(wait)
            return await self._issue(req, settings)
        except RequestError as err:
            self._log_refusal(endpoint, req, err)
            return error_answer(err)
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
            return error_answer(RequestError(500, "M_UNKNOWN", "Internal server error"))

    async def _read_body(self, request: web.Request) -> dict[str, Any]:
        raw = await read_limited(request, MAX_BODY_BYTES)
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise RequestError(400, "M_NOT_JSON", "Error reading request") from None
        if not isinstance(body, dict):
            raise bad_json("The request body must be a JSON object")
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
        user_id = await self._openid.owner(req.openid, settings)
        if user_id == self._own_user_id and not self._sent_here(req.openid.access_token):
            # Its token works in every room it is in: a captured one must open nothing.
            self._log.warning(
                "Auth service: someone presented an OpenID token of the bot's own account at "
                "%s (a captured token?): refused",
                PATHS[req.endpoint],
            )
            raise RequestError(
                403,
                "M_FORBIDDEN",
                OWN_ACCOUNT_TEXT,
                reason="an OpenID token of the bot's own account (refused)",
            )
        if req.claimed_user_id is not None and req.claimed_user_id != user_id:
            raise unauthorised(
                f"member.claimed_user_id {req.claimed_user_id!r} is not the token's owner "
                f"{user_id}"
            )
        if req.member_id is not None:  # /get_token, /delegate_delayed_leave
            alias = livekit_room_alias(req.room_id, req.slot_id)
            identity = livekit_identity(user_id, req.device_id, req.member_id)
        else:
            alias = livekit_room_alias(req.room_id, DEFAULT_SLOT_ID)
            identity = legacy_identity(user_id, req.device_id)

        full_access = is_full_access(
            req.openid.matrix_server_name, full_access_servers(settings, self._own_server)
        )
        delegating = req.delay_id is not None and self.offers_delegation(settings)
        if delegating and not full_access:
            status, errcode = (
                (403, "M_FORBIDDEN") if req.endpoint == "delegate" else (400, "M_BAD_JSON")
            )
            raise RequestError(status, errcode, RESTRICTED_DELEGATION_TEXT)
        await self.check_room(req.room_id, user_id, full_access, settings)
        if req.endpoint == "delegate":
            await self._queue_leave(req, user_id, alias, identity)
            return json_answer(200, {})
        if full_access:
            await self.create_room(alias, settings)
        if delegating:
            await self._queue_leave(req, user_id, alias, identity)
        elif req.delay_id is not None:  # not offered: accepted and ignored (lk-jwt v0.5.0)
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
            PATHS[req.endpoint],
            alias,
            "full" if full_access else "restricted",
        )
        return json_answer(200, {"url": settings.livekit_url, "jwt": jwt})

    async def _queue_leave(
        self, req: TokenRequest, user_id: str, alias: str, identity: str
    ) -> None:
        assert self._delegate is not None
        assert req.delay_id is not None and req.delay_timeout is not None
        leave = LeaveRequest(
            livekit_room=alias,
            identity=identity,
            delay_id=req.delay_id,
            delay_timeout_ms=req.delay_timeout,
            server_name=req.openid.matrix_server_name,
            user_id=user_id,
            room_id=req.room_id,
        )
        try:
            await self._delegate(leave)
        except DelegationRefused as e:
            status, errcode, text = REFUSED_DELEGATION[e.kind]
            raise RequestError(
                status, errcode, text, reason=f"delegated leave refused: {e}"
            ) from None
        url = req.delay_cs_api_url
        self._log.info(
            "Auth service: %s delegated its delayed leave via %s for %s (LiveKit room %s, "
            "identity %s, delay_timeout %d ms%s)",
            user_id,
            PATHS[req.endpoint],
            req.room_id,
            alias,
            printable(identity),
            req.delay_timeout,
            f"; delay_cs_api_url {printable(url[:80])!r} ignored" if url else "",
        )

    async def check_room(
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

    async def create_room(self, alias: str, settings: AuthServiceSettings) -> None:
        # CreateRoom is idempotent on LiveKit: an existing room is returned unchanged.
        lkapi = api.LiveKitAPI(
            settings.livekit_url,
            settings.api_key,
            settings.api_secret,
            session=self._session or self._sfu_api.session(),
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
        path = PATHS[endpoint]
        who = ""
        if req is not None:
            claimed = req.claimed_user_id or f"a user of {req.openid.matrix_server_name}"
            who = f" for claimed user {claimed!r} in {req.room_id!r}"
        level = logging.WARNING if err.status >= 500 or err.status == 401 else logging.INFO
        self._log.log(
            level, "Auth service: refused %s%s: %s %s", path, who, err.status, err.reason
        )
