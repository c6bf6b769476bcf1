"""The authorization service's policy, in words and grants: who gets full access, what a
token allows, what a refusal says (lk-jwt-service's wording where clients match on it)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web
from livekit import api

from rtcbot.auth.requests import RequestError
from rtcbot.auth.settings import AuthServiceSettings

JWT_TTL = timedelta(hours=1)
# Room settings lk-jwt-service uses: keep an empty room 5 min, a deserted one 20 s.
ROOM_EMPTY_TIMEOUT = 300
ROOM_DEPARTURE_TIMEOUT = 20
MAX_USERINFO_BYTES = 16 * 1024

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Accept, Authorization, Content-Type, Origin, X-Requested-With",
    "Access-Control-Max-Age": "86400",
}

UNAUTHORISED_TEXT = "The request could not be authorised."
DISABLED_TEXT = "The authorization service is disabled in rtcbot's config"
NOT_A_MEMBER_TEXT = "The requesting user is not a member of the room"
BOT_NOT_IN_ROOM_TEXT = (
    "rtcbot is not in this room, and its authorization service only issues tokens for rooms "
    "it is in; invite the bot to the room"
)
RESTRICTED_DELEGATION_TEXT = "Delegation of delayed events is only supported for full access users"
REFUSED_DELEGATION = {
    "unresolvable": (400, "M_BAD_JSON", "Unable to resolve client-server API"),
    "too_many": (400, "M_BAD_JSON", "Too many delegated delayed leaves for this user"),
    "unavailable": (503, "M_UNKNOWN", "Service is shutting down"),
}
OWN_ACCOUNT_TEXT = "The authorization service does not issue tokens to this account"
RATE_LIMITED_TEXT = "Too many requests"
RESTRICTED_NO_BOT_TEXT = (
    "rtcbot is not in this room, and its authorization service issues tokens for such rooms "
    "only to users of its full-access homeservers"
)


def unauthorised(reason: str) -> RequestError:
    return RequestError(401, "M_UNAUTHORIZED", UNAUTHORISED_TEXT, reason=reason)


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


def json_answer(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status, headers=CORS_HEADERS)


def rate_limited(wait_s: float) -> web.Response:
    """429 with the wait the token bucket named (both token endpoints)."""
    return json_answer(
        429,
        {
            "errcode": "M_LIMIT_EXCEEDED",
            "error": RATE_LIMITED_TEXT,
            "retry_after_ms": int(wait_s * 1000) + 1,
        },
    )


def error_answer(err: RequestError) -> web.Response:
    return json_answer(err.status, {"errcode": err.errcode, "error": err.error})
