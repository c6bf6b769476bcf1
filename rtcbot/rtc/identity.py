"""LiveKit room names and participant identities as MatrixRTC derives them (MSC4195).

Pure and stdlib-only. The hashing scheme matches lk-jwt-service ≥ v0.4.3 and the MSC4195
appendix: unpadded standard base64 of SHA-256 over a compact JSON array of strings.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from typing import Any

DEFAULT_SLOT_ID = "m.call#ROOM"
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


class JwtDecodeError(ValueError):
    """A JWT's payload could not be read. The message never contains the token itself."""


def _hash_strings(parts: list[str]) -> str:
    # Compact separators and raw UTF-8 are what MSC4195's "canonical JSON" of a string
    # array amounts to; any other spacing would change the hash.
    payload = json.dumps(parts, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(payload.encode("utf-8", errors="surrogatepass")).digest()
    return base64.b64encode(digest).decode("ascii").rstrip("=")


def livekit_room_alias(room_id: str, slot_id: str = DEFAULT_SLOT_ID) -> str:
    """The LiveKit room name for a Matrix room's RTC slot."""
    return _hash_strings([room_id, slot_id])


def livekit_identity(user_id: str, device_id: str, member_id: str) -> str:
    """The hashed LiveKit identity used by `/get_token` (sticky / Matrix 2.0 memberships)."""
    return _hash_strings([user_id, device_id, member_id])


_HASHED = re.compile(r"[A-Za-z0-9+/]{43}")


def is_hashed_identity(identity: str) -> bool:
    """Whether this looks like an MSC4195 hash (unpadded base64 of 32 bytes)."""
    return _HASHED.fullmatch(identity) is not None


def legacy_identity(user_id: str, device_id: str) -> str:
    """The unhashed identity used by `/sfu/get` (state-event memberships)."""
    return f"{user_id}:{device_id}"


def member_identity(user_id: str, device_id: str, member_id: str | None = None) -> str:
    """The LiveKit identity other clients match a call membership of this device against.

    The one place that decides it for the bot's own participant: a state-event membership
    (what the bot publishes; Element Call's compatibility mode) → `user:device`, the
    membership's `membershipID`; a sticky matrix_2_0 membership with its `member.id` → the
    MSC4195 hash. Every media role of the bot uses this identity, so that clients show the
    bot's LiveKit participant as its call membership (and play its audio).
    """
    if member_id is None:
        return legacy_identity(user_id, device_id)
    return livekit_identity(user_id, device_id, member_id)


def decode_jwt_claims(jwt: str) -> dict[str, Any]:
    """Return the JWT's payload claims without verifying the signature.

    Only for reading what a service put into a token we received (room, identity, expiry);
    never use it to make trust decisions.
    """
    if not isinstance(jwt, str):
        raise JwtDecodeError(f"A JWT must be text, not {type(jwt).__name__}.")
    parts = jwt.strip().split(".")
    if len(parts) != 3:
        raise JwtDecodeError(
            f"This is not a JWT: it has {len(parts)} dot-separated parts instead of 3."
        )
    segment = parts[1]
    # The stdlib decoder silently skips foreign characters; insist on the alphabet instead.
    if not _B64URL.fullmatch(segment):
        raise JwtDecodeError("The JWT's payload is not valid base64url.")
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise JwtDecodeError("The JWT's payload is not valid base64url.") from None
    try:
        claims = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise JwtDecodeError("The JWT's payload is not valid JSON.") from None
    if not isinstance(claims, dict):
        raise JwtDecodeError("The JWT's payload is JSON but not an object.")
    return claims
