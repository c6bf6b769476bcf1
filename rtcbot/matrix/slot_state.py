"""The room's MSC4143 call slot as state (rtc/slots.py): read it, and may the bot write it."""

from __future__ import annotations

from typing import Any

from mautrix.api import Method, Path
from mautrix.client import Client
from mautrix.errors import MatrixRequestError
from mautrix.types import EventType, PowerLevelStateEventContent, RoomID, StateEvent, UserID

from ..rtc.slots import ROOM_SLOT, SLOT_TYPES, SlotState, best_state, slot_state
from .crypto_status import room_is_encrypted


async def read_slot(client: Client, room_id: str) -> tuple[SlotState, bool]:
    """(the slot as a current client sees it, whether the room is encrypted)."""
    encrypted = await room_is_encrypted(client, RoomID(room_id))
    states: list[SlotState] = []
    for kind in SLOT_TYPES:
        path = Path.v3.rooms[room_id].state[kind][ROOM_SLOT]
        try:
            content: Any = await client.api.request(Method.GET, path)
        except MatrixRequestError as e:
            if e.http_status != 404:
                raise
            content = None
        states.append(slot_state(content if isinstance(content, dict) else None, encrypted))
    return best_state(states), encrypted


async def may_write_slot(client: Client, room_id: str) -> tuple[bool, int, int]:
    """(allowed, the level the slot needs, the bot's level)."""
    levels = await client.get_state_event(RoomID(room_id), EventType.ROOM_POWER_LEVELS)
    assert isinstance(levels, PowerLevelStateEventContent)
    create = await client.get_state_event(RoomID(room_id), EventType.ROOM_CREATE, format="event")
    needed = max(
        levels.get_event_level(EventType.find(t, EventType.Class.STATE)) for t in SLOT_TYPES
    )
    mine = levels.get_user_level(
        UserID(client.mxid), create=create if isinstance(create, StateEvent) else None
    )
    return mine >= needed, needed, int(mine)
