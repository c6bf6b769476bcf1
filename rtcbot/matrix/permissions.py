"""Can the bot (and can ordinary members) send call membership in a room?

Checked before sending state, so people get "needs power level 50, I have 0, here is the fix"
instead of a raw 403. Room v12 creators have unlimited power (mautrix handles it given the
create event).
"""

from __future__ import annotations

from dataclasses import dataclass

from mautrix.client import Client
from mautrix.types import EventType, PowerLevelStateEventContent, RoomID, StateEvent, UserID

CALL_MEMBER = EventType.find("org.matrix.msc3401.call.member", EventType.Class.STATE)


@dataclass(frozen=True)
class CallPermission:
    needed: int  # level required to send call membership
    bot_level: int
    member_level: int  # users_default: what an ordinary member has

    @property
    def bot_can_join(self) -> bool:
        return self.bot_level >= self.needed

    @property
    def members_can_join(self) -> bool:
        return self.member_level >= self.needed


FIX_HINT = (
    "A room admin can fix this in the room settings: in Element, Settings → Voice & Video → "
    "enable Element Call (or Roles & Permissions → 'Join calls'), which lowers the level needed "
    "for `org.matrix.msc3401.call.member` to {member_level}."
)


def explain_bot(perm: CallPermission) -> str:
    return (
        f"I can't join calls in this room: sending call membership needs power level "
        f"{perm.needed} and I have {perm.bot_level}. "
        + FIX_HINT.format(member_level=perm.member_level)
    )


def explain_members(perm: CallPermission) -> str:
    return (
        f"Ordinary members (power level {perm.member_level}) can't join calls here: call "
        f"membership needs level {perm.needed}. " + FIX_HINT.format(member_level=perm.member_level)
    )


async def check_call_permission(
    client: Client, room_id: RoomID, user_id: UserID
) -> CallPermission:
    levels = await client.get_state_event(room_id, EventType.ROOM_POWER_LEVELS)
    assert isinstance(levels, PowerLevelStateEventContent)
    create = await client.get_state_event(room_id, EventType.ROOM_CREATE, format="event")
    assert isinstance(create, StateEvent)
    return CallPermission(
        needed=levels.get_event_level(CALL_MEMBER),
        bot_level=levels.get_user_level(user_id, create=create),
        member_level=int(levels.users_default),
    )


async def user_level(client: Client, room_id: RoomID, user_id: UserID) -> int:
    """A member's power level in the room (room v12 creators: unlimited, as mautrix says)."""
    levels = await client.get_state_event(room_id, EventType.ROOM_POWER_LEVELS)
    assert isinstance(levels, PowerLevelStateEventContent)
    create = await client.get_state_event(room_id, EventType.ROOM_CREATE, format="event")
    return int(
        levels.get_user_level(user_id, create=create if isinstance(create, StateEvent) else None)
    )
