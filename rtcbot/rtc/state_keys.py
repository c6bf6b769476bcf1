"""The state keys of session memberships: js-sdk's `_@user:server_DEVICE_m.call`, built and
split (pure)."""

from __future__ import annotations

from typing import Final

from .member_fields import is_user_id

CALL_APPLICATION: Final = "m.call"
ROOM_CALL_ID: Final = "ROOM"  # wire call_id "" <=> slot "m.call#ROOM"
# Applications whose state-key suffix we recognise even when device IDs contain "_".
KNOWN_APPLICATIONS: Final = (CALL_APPLICATION,)


def make_state_key(
    user_id: str,
    device_id: str,
    application: str = CALL_APPLICATION,
    slot: str = "",
    leading_underscore: bool = True,
) -> str:
    """The state key js-sdk uses for a device's session membership.

    ``slot`` is the call_id ("" or "ROOM" for the room call); js-sdk appends it to the
    application with no separator. Drop the leading "_" only in MSC3757 room versions.
    """
    slot_part = "" if slot in ("", ROOM_CALL_ID) else slot
    key = f"{user_id}_{device_id}_{application}{slot_part}"
    return f"_{key}" if leading_underscore else key


def parse_state_key(key: str) -> tuple[str, str, str] | None:
    """Split a session state key into (user_id, device_id, application + slot part).

    Returns None for anything else (including a bare user ID, the legacy shape). Server names
    cannot contain "_", so the user ID ends at the first "_" after its ":". Device IDs normally
    have no "_": a known application suffix (``_m.call``) is looked for first, otherwise the
    application is the last "_" segment. Old js-sdk keys without an application part give "".
    """
    if not isinstance(key, str):
        return None
    rest = key[1:] if key.startswith("_") else key
    if not rest.startswith("@"):
        return None
    colon = rest.find(":")
    if colon < 2:
        return None
    end = rest.find("_", colon)
    if end == -1 or end == colon + 1:
        return None
    user_id, tail = rest[:end], rest[end + 1 :]
    if not is_user_id(user_id) or not tail:
        return None
    for application in KNOWN_APPLICATIONS:
        at = tail.find(f"_{application}")
        if at > 0:
            return user_id, tail[:at], tail[at + 1 :]
    at = tail.rfind("_")
    if at == -1:
        return user_id, tail, ""
    if at == 0:
        return None
    return user_id, tail[:at], tail[at + 1 :]


def owns_state_key(state_key: str, sender: str, device_id: str) -> bool:
    """Whether a session state key belongs to ``sender``'s ``device_id``.

    Checked by prefix rather than via ``parse_state_key`` so device IDs containing "_" work.
    """
    for prefix in ("_", ""):
        base = f"{prefix}{sender}_"
        if state_key.startswith(base):
            tail = state_key[len(base) :]
            if tail == device_id or tail.startswith(f"{device_id}_"):
                return True
    # Very old clients put session content under the bare user ID.
    return state_key == sender
