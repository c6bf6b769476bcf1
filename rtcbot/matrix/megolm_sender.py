"""Which device sent a Megolm-encrypted room event, as the decryption knows it.

MSC4143 "current" call members name no device (matrix-rust-rtc takes it from the decryption
info); their LiveKit identity and their media keys are bound to it. mautrix's decrypted event
does not carry the device, so it is looked up: the raw event's Megolm session → the session's
sender key (what the Olm channel that shared it authenticated) → the sender's device with that
identity key. None for an unencrypted event or a session the bot does not hold.
"""

from __future__ import annotations

from mautrix.api import Method, Path
from mautrix.client import Client
from mautrix.types import RoomID, SessionID, UserID


async def megolm_sender_device(
    client: Client, room_id: str, event_id: str, sender: str
) -> str | None:
    crypto = client.crypto
    if crypto is None:
        return None
    try:
        raw = await client.api.request(Method.GET, Path.v3.rooms[room_id].event[event_id])
    except Exception:
        return None
    content = raw.get("content") if isinstance(raw, dict) else None
    if not isinstance(raw, dict) or raw.get("type") != "m.room.encrypted":
        return None
    session_id = content.get("session_id") if isinstance(content, dict) else None
    if not isinstance(session_id, str):
        return None
    session = await crypto.crypto_store.get_group_session(RoomID(room_id), SessionID(session_id))
    if session is None:
        return None
    device = await crypto.crypto_store.find_device_by_key(UserID(sender), session.sender_key)
    return str(device.device_id) if device is not None else None
