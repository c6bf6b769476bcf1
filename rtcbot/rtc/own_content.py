"""The bot's own call membership content, exactly as js-sdk writes it (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .identity import legacy_identity
from .membership import DEFAULT_EXPIRES_MS
from .state_keys import CALL_APPLICATION


def livekit_transport(service_url: str, alias: str | None = None) -> dict[str, Any]:
    """A ``foci_preferred`` entry; EC puts the Matrix room ID in ``livekit_alias``."""
    transport: dict[str, Any] = {"type": "livekit", "livekit_service_url": service_url}
    if alias is not None:
        transport["livekit_alias"] = alias
    return transport


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
