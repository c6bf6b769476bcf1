"""SFU access for the bot: tokens from a MatrixRTC authorization service or minted locally.

Secrets policy: neither the OpenID access token nor any JWT may appear in an exception
message, a log line or a repr. Server-supplied error text is scrubbed of both before use.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, Protocol

import aiohttp
from livekit import api
from livekit.protocol import models
from livekit.protocol import room as room_pb

from rtcbot.rtc.identity import (
    DEFAULT_SLOT_ID,
    JwtDecodeError,
    decode_jwt_claims,
    livekit_room_alias,
    member_identity,
)

from ..net.outbound import GuardedClient, OutboundRefused
from ..net.own_token import note_sent
from ..redaction import redact, shorten

Via = Literal["get_token", "sfu_get", "local", "homeserver"]
Role = Literal["recorder", "announcer"]
SfuErrorKind = Literal[
    "unauthorised", "unreachable", "bad_request", "server_error", "bad_response", "not_found"
]
Clock = Callable[[], float]

# The authorization service passes the OpenID response through verbatim and rejects unknown
# fields, so only these keys are forwarded even if the homeserver returned more.
OPENID_FIELDS = ("access_token", "token_type", "matrix_server_name", "expires_in")
# Used when a service token has no `exp`: short, so the cache refreshes it soon.
_FALLBACK_LIFETIME = 300.0
_MAX_ERROR_TEXT = 200
_MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True)
class SfuAccess:
    """Everything needed to connect to one LiveKit room as one participant."""

    url: str
    jwt: str = field(repr=False)
    room: str
    identity: str
    expires_at: float
    via: Via


class SfuAuthError(Exception):
    """Getting SFU access failed; `message` is a sentence meant for a person.

    kind: "unauthorised" (401/403), "unreachable" (network error or timeout),
    "bad_request" (400 and other 4xx), "server_error" (5xx, 429), "bad_response" (2xx
    without a usable url/jwt), "not_found" (404 on both endpoints: wrong service URL).
    """

    def __init__(
        self,
        kind: SfuErrorKind,
        status: int | None,
        message: str,
        *,
        errcode: str | None = None,
        homeserver: bool = False,
    ) -> None:
        super().__init__(message)
        # From the homeserver's rtc/livekit/get_token (a `url` transport), not a service.
        self.homeserver = homeserver
        self.kind: SfuErrorKind = kind
        self.status = status
        self.message = message
        self.errcode = errcode

    @property
    def retryable(self) -> bool:
        """Whether trying again later may help without changing anything."""
        return self.kind in ("unreachable", "server_error")

    def __repr__(self) -> str:
        return (
            f"SfuAuthError(kind={self.kind!r}, status={self.status!r}, message={self.message!r})"
        )


def access_from_jwt(url: str, jwt: str, via: Via, *, now: float | None = None) -> SfuAccess:
    """Build SfuAccess from a JWT, taking room and identity from its claims.

    Services differ in how they derive both (lk-jwt-service changed the scheme three times),
    so the token itself is the only trustworthy source. Raises ValueError when unusable.
    """
    claims = decode_jwt_claims(jwt)
    video = claims.get("video")
    room = video.get("room") if isinstance(video, dict) else None
    identity = claims.get("sub")
    if not isinstance(room, str) or not room:
        raise ValueError("The JWT names no LiveKit room (claim video.room is missing).")
    if not isinstance(identity, str) or not identity:
        raise ValueError("The JWT names no participant identity (claim sub is missing).")
    exp = claims.get("exp")
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        expires_at = float(exp)
    else:
        expires_at = (time.time() if now is None else now) + _FALLBACK_LIFETIME
    return SfuAccess(
        url=url, jwt=jwt, room=room, identity=identity, expires_at=expires_at, via=via
    )


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    return shorten(redact(text, secrets), _MAX_ERROR_TEXT)


@dataclass
class _Reply:
    status: int
    body: Any  # parsed JSON, or None when the body was not JSON
    text: str


class AuthServiceClient:
    """Client for a MatrixRTC authorization service (lk-jwt-service or compatible)."""

    def __init__(
        self,
        session: aiohttp.ClientSession | GuardedClient,
        *,
        timeout: float = 10.0,
        log: logging.Logger | None = None,
    ) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._log = log or logging.getLogger(__name__)

    async def get_access(
        self,
        service_url: str,
        room_id: str,
        openid_token: Mapping[str, Any],
        user_id: str,
        device_id: str,
        member_id: str,
        slot_id: str = DEFAULT_SLOT_ID,
        *,
        prefer: Literal["get_token", "sfu_get"] = "get_token",
    ) -> SfuAccess:
        """Ask the service for a LiveKit JWT at the `prefer`red endpoint, the other one if
        that is 404. `/get_token` gives the hashed identity of a sticky (matrix_2_0)
        membership with `member_id`; `/sfu/get` the `user:device` identity of a state-event
        membership (Element Call's compatibility mode, and the bot's own membership)."""
        base = service_url.rstrip("/")
        token = {k: openid_token[k] for k in OPENID_FIELDS if k in openid_token}
        secrets = (str(token.get("access_token") or ""),)
        note_sent(secrets[0], base)  # rtcbot's own service accepts the bot only from here
        requests: dict[Via, tuple[str, dict[str, Any], str]] = {
            "get_token": (
                f"{base}/get_token",
                {
                    "room_id": room_id,
                    "slot_id": slot_id,
                    "openid_token": token,
                    "member": {
                        "id": member_id,
                        "claimed_user_id": user_id,
                        "claimed_device_id": device_id,
                    },
                },
                member_identity(user_id, device_id, member_id),
            ),
            "sfu_get": (
                f"{base}/sfu/get",
                {"room": room_id, "openid_token": token, "device_id": device_id},
                member_identity(user_id, device_id),
            ),
        }
        order: tuple[Via, Via] = (
            ("get_token", "sfu_get") if prefer == "get_token" else ("sfu_get", "get_token")
        )
        via: Via = order[0]
        endpoint, payload, expected = requests[via]
        reply = await self._post(endpoint, payload, secrets)
        if reply.status == 404:
            # Services older than v0.4.0 (or proxies that only forward the old path), or
            # services that dropped /sfu/get.
            self._log.debug("%s is 404, trying the other endpoint", endpoint)
            via = order[1]
            endpoint, payload, expected = requests[via]
            reply = await self._post(endpoint, payload, secrets)
            if reply.status == 404:
                raise SfuAuthError(
                    "not_found",
                    404,
                    f"Nothing answers at {base}/get_token or {base}/sfu/get (both 404). Check "
                    "livekit_service_url, and that a reverse proxy strips its path prefix.",
                )
        if not 200 <= reply.status < 300:
            raise self._classify(base, via, reply, secrets)

        body = reply.body
        url = body.get("url") if isinstance(body, dict) else None
        jwt = body.get("jwt") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url or not isinstance(jwt, str) or not jwt:
            raise SfuAuthError(
                "bad_response",
                reply.status,
                f"The authorization service at {base} answered without a LiveKit url and "
                "jwt; it may not be a MatrixRTC authorization service.",
            )
        try:
            access = access_from_jwt(url, jwt, via)
        except (JwtDecodeError, ValueError) as exc:
            raise SfuAuthError(
                "bad_response",
                reply.status,
                f"The authorization service at {base} returned a token that cannot be used: {exc}",
            ) from None
        if access.identity != expected:
            # Not an error: the token is authoritative. Worth knowing when debugging
            # why other clients do not match the bot up with its membership.
            self._log.info(
                "%s uses a different identity scheme than this bot expects (%s)", base, via
            )
        expected_room = livekit_room_alias(
            room_id, slot_id if via == "get_token" else DEFAULT_SLOT_ID
        )
        if access.room != expected_room:
            self._log.info("%s uses a different LiveKit room naming scheme (%s)", base, via)
        self._log.debug(
            "Got SFU access for %s in %s via %s (LiveKit room %s)",
            user_id,
            room_id,
            via,
            access.room,
        )
        return access

    async def _post(self, url: str, payload: dict[str, Any], secrets: tuple[str, ...]) -> _Reply:
        try:
            async with self._session.post(
                url, json=payload, timeout=self._timeout, allow_redirects=False
            ) as resp:
                raw = await resp.content.read(_MAX_RESPONSE_BYTES)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OutboundRefused) as exc:
            reason = _scrub(str(exc), secrets) or type(exc).__name__
            if isinstance(exc, OutboundRefused):  # no request made (net/outbound.py)
                reason = f"not contacted ({exc.reason})"
            elif isinstance(exc, TimeoutError):
                reason = f"no answer within {self._timeout.total:g} s"
            raise SfuAuthError(
                "unreachable",
                None,
                f"Could not reach the MatrixRTC authorization service at {url}: {reason}.",
            ) from None
        text = raw.decode("utf-8", errors="replace")
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        return _Reply(status, body, text)

    def _classify(
        self, base: str, via: Via, reply: _Reply, secrets: tuple[str, ...]
    ) -> SfuAuthError:
        body = reply.body if isinstance(reply.body, dict) else {}
        errcode = body.get("errcode") if isinstance(body.get("errcode"), str) else None
        error = body.get("error") if isinstance(body.get("error"), str) else None
        detail = " ".join(x for x in (errcode, error) if x) or reply.text.strip()
        detail = _scrub(detail, secrets) or "no details"
        endpoint = f"{base}/{'get_token' if via == 'get_token' else 'sfu/get'}"
        status = reply.status
        if status in (401, 403):
            return SfuAuthError(
                "unauthorised",
                status,
                f"{endpoint} refused the bot ({status}: {detail}). The service usually cannot "
                "verify the bot's OpenID token: it must reach the bot homeserver's federation "
                "or openid listener, and that homeserver must be allowed by the service.",
                errcode=errcode,
            )
        if status >= 500 or status == 429:
            return SfuAuthError(
                "server_error",
                status,
                f"{endpoint} failed ({status}: {detail}); this is a problem on the service or "
                "SFU side and may go away if tried again.",
                errcode=errcode,
            )
        return SfuAuthError(
            "bad_request",
            status,
            f"{endpoint} rejected the request ({status}: {detail}); the service may speak a "
            "different protocol version than this bot.",
            errcode=errcode,
        )


class LiveKitCredentials(Protocol):
    """Anything with the LiveKit server URL and API key pair (e.g. config.LiveKitSettings)."""

    @property
    def url(self) -> str: ...
    @property
    def api_key(self) -> str: ...
    @property
    def api_secret(self) -> str: ...


Roles = frozenset[Role]
ROLES: tuple[Role, ...] = ("recorder", "announcer")
# Sources in the order LiveKit compares them (ParticipantPermission.can_publish_sources).
_SOURCE_ENUM = {"camera": models.TrackSource.CAMERA, "microphone": models.TrackSource.MICROPHONE}


def as_roles(role: Role | Iterable[Role]) -> Roles:
    """One role or several as a set; raises ValueError for an unknown or empty one."""
    roles = frozenset([role] if isinstance(role, str) else role)
    unknown = sorted(str(r) for r in roles if r not in ROLES)
    if unknown or not roles:
        raise ValueError(
            f"Unknown bot role {', '.join(unknown) or '(none)'}; expected 'recorder' and/or "
            "'announcer'."
        )
    return roles


def publish_sources(roles: Role | Iterable[Role]) -> list[str]:
    """What the bot may publish for these roles: its status picture (a camera track, every
    role shows one) and, for the announcer, a microphone."""
    return ["camera", *(["microphone"] if "announcer" in as_roles(roles) else [])]


def grants_for(roles: Role | Iterable[Role], room: str) -> api.VideoGrants:
    """Least privilege for the bot's one participant with these roles (the union of theirs).

    recorder: subscribe (to hear everyone) + publish the camera source (the "● Recording"
    picture), flagged `recorder` (LiveKit marks the room as being recorded, and a recorder
    never keeps a room open by itself); announcer: publish microphone + camera, no subscribe.
    Never hidden: clients show the bot as its call membership and play its audio. No data
    channel, no metadata changes, no room administration.
    """
    rs = as_roles(roles)
    return api.VideoGrants(
        room_join=True,
        room=room,
        can_subscribe="recorder" in rs,
        can_publish=True,
        can_publish_sources=publish_sources(rs),
        can_publish_data=False,
        can_update_own_metadata=False,
        hidden=False,
        recorder="recorder" in rs,
    )


def permission_for(roles: Role | Iterable[Role]) -> models.ParticipantPermission:
    """The same least privilege as `grants_for`, as RoomService.UpdateParticipant takes it."""
    g = grants_for(roles, "-")
    return models.ParticipantPermission(
        can_subscribe=bool(g.can_subscribe),
        can_publish=bool(g.can_publish),
        can_publish_data=bool(g.can_publish_data),
        can_publish_sources=[_SOURCE_ENUM[s] for s in g.can_publish_sources or []],
        can_update_metadata=bool(g.can_update_own_metadata),
        hidden=bool(g.hidden),
        recorder=bool(g.recorder),
    )


def participant_name(base: str, roles: Iterable[Role]) -> str:
    """The LiveKit participant name: "rtcbot (recording)" while recording, else
    "rtcbot (announcer)"; just the base without a role."""
    rs = frozenset(roles)
    if "recorder" in rs:
        return f"{base} (recording)"
    if "announcer" in rs:
        return f"{base} (announcer)"
    return base


def mint_local_token(
    livekit: LiveKitCredentials,
    room: str,
    identity: str,
    role: Role | Iterable[Role],
    name: str | None = None,
    ttl: timedelta = timedelta(minutes=10),
) -> SfuAccess:
    """Sign a least-privilege token with our own LiveKit API key (no auth service involved)."""
    if not livekit.url or not livekit.api_key or not livekit.api_secret:
        raise ValueError(
            "Minting LiveKit tokens needs livekit.url, livekit.api_key and livekit.api_secret."
        )
    if not room or not identity:
        raise ValueError("Minting a LiveKit token needs both a room name and an identity.")
    if ttl <= timedelta(0):
        raise ValueError("A LiveKit token's lifetime must be positive.")
    token = (
        api.AccessToken(livekit.api_key, livekit.api_secret)
        .with_identity(identity)
        .with_ttl(ttl)
        .with_grants(grants_for(role, room))
    )
    if name:
        token = token.with_name(name)
    return access_from_jwt(livekit.url, token.to_jwt(), "local")


async def update_live_grants(
    livekit: LiveKitCredentials,
    room: str,
    identity: str,
    roles: Role | Iterable[Role],
    name: str | None = None,
    *,
    session: aiohttp.ClientSession | None = None,
    timeout: float = 10.0,
) -> models.ParticipantInfo:
    """Widen or narrow a connected participant's permissions to `roles` (and rename it) with
    RoomService.UpdateParticipant, without reconnecting. The SFU applies it at once: a
    revoked source's tracks are unpublished, revoked subscriptions dropped, subscriptions
    that were waiting for permission start; it also sends the client a refreshed token with
    the new grants. Raises livekit.api.TwirpError (e.g. not_found when the participant is
    gone) or aiohttp/timeout errors; the caller decides whether to reconnect instead."""
    request = room_pb.UpdateParticipantRequest(
        room=room, identity=identity, permission=permission_for(roles), name=name or ""
    )
    lk = api.LiveKitAPI(livekit.url, livekit.api_key, livekit.api_secret, session=session)
    try:
        async with asyncio.timeout(timeout):
            return await lk.room.update_participant(request)
    finally:
        await lk.aclose()
