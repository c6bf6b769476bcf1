"""The bot's own call membership content, exactly as js-sdk writes it (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .identity import legacy_identity
from .member_fields import Transport
from .membership import DEFAULT_EXPIRES_MS
from .state_keys import CALL_APPLICATION


def livekit_transport(service_url: str, alias: str | None = None) -> dict[str, Any]:
    """A ``foci_preferred`` entry; EC puts the Matrix room ID in ``livekit_alias``."""
    transport: dict[str, Any] = {"type": "livekit", "livekit_service_url": service_url}
    if alias is not None:
        transport["livekit_alias"] = alias
    return transport


def transport_entry(transport: Transport | None, alias: str | None = None) -> dict[str, Any]:
    """The bot's `foci_preferred` entry for its transport: the fields it was advertised with
    (`url`, `livekit_service_url` or both), so that each client takes the one it speaks."""
    if transport is None:
        return livekit_transport("", alias)
    entry: dict[str, Any] = {"type": "livekit"}
    if transport.url:
        entry["url"] = transport.url
    if transport.livekit_service_url or not transport.url:
        entry["livekit_service_url"] = transport.livekit_service_url or ""
    if alias is not None:
        entry["livekit_alias"] = alias
    return entry


def session_content(
    user_id: str,
    device_id: str,
    transports: Sequence[Mapping[str, Any]] = (),
    *,
    intent: str | None = "audio",
    expires_ms: int = DEFAULT_EXPIRES_MS,
    created_ts: int | None = None,
    application: str = CALL_APPLICATION,
    call_id: str = "",
    focus_selection: str = "multi_sfu",
) -> dict[str, Any]:
    """The session membership content exactly as js-sdk writes it (EC compatibility mode).

    ``created_ts`` is omitted on the first join and carries the original join time on every
    refresh; ``intent`` None leaves ``m.call.intent`` out.
    """
    content: dict[str, Any] = {
        "application": application,
        "call_id": call_id,
        "scope": "m.room",
        "device_id": device_id,
        "membershipID": legacy_identity(user_id, device_id),
        "expires": expires_ms,
    }
    if intent is not None:
        content["m.call.intent"] = intent
    content["focus_active"] = {"type": "livekit", "focus_selection": focus_selection}
    content["foci_preferred"] = [dict(t) for t in transports]
    if created_ts is not None:
        content["created_ts"] = created_ts
    return content


CURRENT_SLOT = "m.call#room"  # MSC4143 current's room-wide slot (matrix-rust-rtc)


def current_member_content(
    member_id: str, transport: Mapping[str, Any], *, leave: bool = False
) -> dict[str, Any]:
    """The bot's membership in MSC4143 "current" (compat/sticky_2025.rs, "MSC4143 today"):
    no user and no device (the receiver takes them from the sender and the decryption), the
    transport nested, the slot `m.call#room`; a leave is full content with `membership:
    "leave"`."""
    content: dict[str, Any] = {
        "slot_id": CURRENT_SLOT,
        "msc4354_sticky_key": member_id,
        "member": {"id": member_id, "membership": "leave" if leave else "join"},
        "application": {"type": CALL_APPLICATION},
        "transports": {"published": [dict(transport)], "can_subscribe": ["livekit"]},
    }
    if leave:
        content["leave_reason"] = "user_left"
    return content
