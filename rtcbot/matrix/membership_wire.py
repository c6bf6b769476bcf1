"""How the bot's own membership goes on the wire, in the dialect it answers in.

`StateWire`: Element Call's session membership, an `org.matrix.msc3401.call.member` state
event under the bot's state key, its delayed leave the empty state. `StickyWire`: MSC4143
"current" (what Element X's coming Rust stack reads): a sticky `org.matrix.msc4143.rtc.member`
message (MSC4354) with the slot `m.call#room`, its delayed leave a sticky message with
`membership: "leave"`; in an encrypted room both are Megolm-encrypted before they are sent or
scheduled (nothing goes out in plaintext there). The planner (rtc/membership_plan.py) is the
same for both.
"""

from __future__ import annotations

from typing import Any, Final, Protocol, cast

from mautrix.client import Client
from mautrix.types import EventType, RoomID

from ..rtc.membership import CALL_MEMBER_TYPE, MAX_STICKY_DURATION_MS, RTC_MEMBER_TYPE
from ..rtc.membership_plan import stale_leaves
from ..rtc.own_content import current_member_content, session_content
from ..rtc.state_keys import make_state_key
from .crypto_status import room_is_encrypted
from .delayed_events import DelayedEvents, RequestRefused

STICKY_PARAM: Final = "org.matrix.msc4354.sticky_duration_ms"


class MembershipWire(Protocol):
    dialect: str

    def join_content(
        self, *, expires_ms: int, intent: str | None, created_ts: int | None
    ) -> dict[str, Any]: ...

    async def schedule_leave(self, delayed: DelayedEvents, room_id: str, delay_ms: int) -> str: ...
    async def send(self, delayed: DelayedEvents, room_id: str, content: dict[str, Any]) -> str: ...
    async def put_leave(self, delayed: DelayedEvents, room_id: str) -> None: ...
    def stale(self, pending: list[dict[str, Any]], room_id: str, own: str | None) -> list[str]: ...


class StateWire:
    dialect = "element_call"

    def __init__(self, user_id: str, device_id: str, transports: list[dict[str, Any]]) -> None:
        self.user_id, self.device_id = user_id, device_id
        self.transports = transports
        self.state_key = make_state_key(user_id, device_id)

    def join_content(
        self, *, expires_ms: int, intent: str | None, created_ts: int | None
    ) -> dict[str, Any]:
        return session_content(
            user_id=self.user_id,
            device_id=self.device_id,
            expires_ms=expires_ms,
            intent=intent,
            transports=self.transports,
            created_ts=created_ts,
        )

    async def schedule_leave(self, delayed: DelayedEvents, room_id: str, delay_ms: int) -> str:
        return await delayed.schedule_state(
            room_id, CALL_MEMBER_TYPE, self.state_key, {}, delay_ms
        )

    async def send(self, delayed: DelayedEvents, room_id: str, content: dict[str, Any]) -> str:
        return await delayed.put_state(room_id, CALL_MEMBER_TYPE, self.state_key, content)

    async def put_leave(self, delayed: DelayedEvents, room_id: str) -> None:
        await delayed.put_state(room_id, CALL_MEMBER_TYPE, self.state_key, {})

    def stale(self, pending: list[dict[str, Any]], room_id: str, own: str | None) -> list[str]:
        """Delayed leaves for our key that this process did not schedule (a killed earlier
        process's): the server does not cancel them when we write the state again."""
        return stale_leaves(pending, room_id, self.state_key, own, CALL_MEMBER_TYPE)


class StickyWire:
    dialect = "current"

    def __init__(self, client: Client, member_id: str, transport: dict[str, Any]) -> None:
        self.client = client
        self.member_id = member_id
        self.transport = transport
        self.query = {STICKY_PARAM: str(MAX_STICKY_DURATION_MS)}

    def join_content(
        self, *, expires_ms: int, intent: str | None, created_ts: int | None
    ) -> dict[str, Any]:
        # No expiry field: a sticky membership ends with its stickiness (refreshed in time).
        return current_member_content(self.member_id, self.transport)

    async def _wire(self, room_id: str, content: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        # These requests bypass mautrix's send path (and the encryption guard): refuse here
        # what would go out in plaintext into an encrypted room.
        if await room_is_encrypted(self.client, RoomID(room_id)):
            if self.client.crypto is None:
                raise RequestRefused(
                    "this room is encrypted and my end-to-end encryption is off", 0, "PLAINTEXT"
                )
            kind = EventType.find(RTC_MEMBER_TYPE, EventType.Class.MESSAGE)
            encrypted = await self.client.encrypt(RoomID(room_id), kind, cast(Any, content))
            return "m.room.encrypted", encrypted.serialize()
        return RTC_MEMBER_TYPE, content

    def _leave(self) -> dict[str, Any]:
        return current_member_content(self.member_id, self.transport, leave=True)

    async def schedule_leave(self, delayed: DelayedEvents, room_id: str, delay_ms: int) -> str:
        kind, content = await self._wire(room_id, self._leave())
        return await delayed.schedule_message(room_id, kind, content, delay_ms, self.query)

    async def send(self, delayed: DelayedEvents, room_id: str, content: dict[str, Any]) -> str:
        kind, wire = await self._wire(room_id, content)
        return await delayed.put_message(room_id, kind, wire, self.query)

    async def put_leave(self, delayed: DelayedEvents, room_id: str) -> None:
        kind, content = await self._wire(room_id, self._leave())
        await delayed.put_message(room_id, kind, content, self.query)

    def stale(self, pending: list[dict[str, Any]], room_id: str, own: str | None) -> list[str]:
        # An earlier process's sticky leave cannot be told from another device's by its
        # (possibly encrypted) content: left to fire; it names our member id, which a new
        # join replaces (the newest sticky event of a key wins).
        return []
