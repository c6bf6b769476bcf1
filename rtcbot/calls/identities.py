"""Whose is a LiveKit identity: the call member behind it, for recordings, opt-outs and cards."""

from __future__ import annotations

from ..ports import CallDirectory


def identity_owner(calls: CallDirectory, room_id: str, identity: str) -> tuple[str, str] | None:
    """(user, device) behind a LiveKit identity: a call member's (hashed matrix_2_0
    identities too), else what an `@user:server:DEVICE` identity says."""
    found = calls.member_by_identity(room_id, identity)
    if found is not None:
        return found
    if identity.startswith("@") and identity.count(":") >= 2:
        user, _, device = identity.rpartition(":")
        return user, device
    return None
