"""`!call slot [open|close]`: the room's MSC4143 call slot (rtc/slots.py), read and written.

Reading is for everyone; writing needs a moderator (commands/permissions.py). The bot writes
the slot under both types (unstable and stable) with the encryption the room has, after
checking that its power level allows it, so that people get a sentence instead of a 403.
"""

from __future__ import annotations

from mautrix.errors import MForbidden
from mautrix.types import EventType, RoomID

from ..commands.router import CommandContext, CommandRouter
from ..context import BotContext
from ..matrix.slot_state import may_write_slot, read_slot
from ..rtc.slots import (
    EXPLAIN,
    ROOM_SLOT,
    SLOT_TYPES,
    slot_content,
)


class SlotCommands:
    def __init__(self, ctx: BotContext) -> None:
        self.ctx = ctx

    def register(self, router: CommandRouter) -> None:
        router.add(
            "slot", "[open|close]", "the call slot that Element X's coming stack needs", self.slot
        )

    async def slot(self, ctx: CommandContext) -> None:
        state, encrypted = await read_slot(self.ctx.client, ctx.room_id)
        if ctx.action not in ("open", "close"):
            await ctx.reply(
                f"The room's call slot (`{ROOM_SLOT}`) is {EXPLAIN[state]}. "
                f"Usage: `{ctx.prefix} slot open|close`"
            )
            return
        allowed, needed, mine = await may_write_slot(self.ctx.client, ctx.room_id)
        if not allowed:
            await ctx.reply(
                f"I can't {ctx.action} the call slot: it needs power level {needed} and I "
                f"have {mine}. A room admin can raise my level, or send the state event "
                f"`{SLOT_TYPES[1]}` (state key `{ROOM_SLOT}`) themselves."
            )
            return
        content = slot_content(ctx.action == "open", encrypted)
        try:
            for kind in SLOT_TYPES:
                await self.ctx.client.send_state_event(
                    RoomID(ctx.room_id),
                    EventType.find(kind, EventType.Class.STATE),
                    content,
                    ROOM_SLOT,
                )
        except MForbidden:
            await ctx.reply("The homeserver refused to let me write the call slot.")
            return
        now, _ = await read_slot(self.ctx.client, ctx.room_id)
        await ctx.reply(
            f"The call slot is now {EXPLAIN[now]}"
            + (
                " (with per-member encryption, as this room is encrypted)."
                if encrypted and now == "open"
                else "."
            )
        )
