"""MSC4171 functional members: `io.element.functional_members` `{"service_members": [...]}`.

Clients leave the users listed there out when they name a room, count a DM or ring a call
(element-web#22894; Element Call #4326): without it, a DM plus the bot is a "group" and a call
there rings like one. The bot adds itself where its power level allows (when it joins and when
the levels change), keeping whatever else the list and the content hold; where it may not,
`!call diag` says so.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from mautrix.api import Method, Path
from mautrix.client import Client
from mautrix.errors import MatrixRequestError
from mautrix.types import EventType, PowerLevelStateEventContent, RoomID, StateEvent, UserID

FUNCTIONAL_MEMBERS: Final = "io.element.functional_members"
FUNCTIONAL_TYPE: Final = EventType.find(FUNCTIONAL_MEMBERS, EventType.Class.STATE)

Outcome = Literal["present", "added", "not_allowed"]


def with_service_member(content: Any, user_id: str) -> dict[str, Any] | None:
    """The content with `user_id` in `service_members` (other entries and keys kept; entries
    that are not strings dropped), or None when it is there already (pure)."""
    base = dict(content) if isinstance(content, dict) else {}
    listed = base.get("service_members")
    members = [m for m in listed if isinstance(m, str)] if isinstance(listed, list) else []
    if user_id in members:
        return None
    base["service_members"] = [*members, user_id]
    return base


async def functional_content(client: Client, room_id: str) -> Any:
    try:
        return await client.api.request(
            Method.GET, Path.v3.rooms[room_id].state[FUNCTIONAL_MEMBERS][""]
        )
    except MatrixRequestError as e:
        if e.http_status == 404:
            return None
        raise


async def levels_for(client: Client, room_id: str) -> tuple[int, int]:
    """(the level the functional members need, the bot's level)."""
    levels = await client.get_state_event(RoomID(room_id), EventType.ROOM_POWER_LEVELS)
    assert isinstance(levels, PowerLevelStateEventContent)
    create = await client.get_state_event(RoomID(room_id), EventType.ROOM_CREATE, format="event")
    mine = levels.get_user_level(
        UserID(client.mxid), create=create if isinstance(create, StateEvent) else None
    )
    return int(levels.get_event_level(FUNCTIONAL_TYPE)), int(mine)


async def ensure_service_member(client: Client, room_id: str) -> Outcome:
    updated = with_service_member(await functional_content(client, room_id), str(client.mxid))
    if updated is None:
        return "present"
    needed, mine = await levels_for(client, room_id)
    if mine < needed:
        return "not_allowed"
    await client.send_state_event(RoomID(room_id), FUNCTIONAL_TYPE, updated, "")
    return "added"
