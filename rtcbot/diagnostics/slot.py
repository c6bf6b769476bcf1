"""The room's MSC4143 call slot (rtc/slots.py): what clients that read slots (Element X's
coming Rust stack) may do here. Element Call 0.26 does not read slots, hence a warning at
most."""

from __future__ import annotations

from ..matrix.slot_state import may_write_slot, read_slot
from ..rtc.slots import EXPLAIN, ROOM_SLOT, SlotState
from .probe import Probe, RunState
from .report import OK, SLOT, WARN, Check


def judge_slot(state: SlotState, allowed: bool, needed: int, mine: int, prefix: str) -> Check:
    """The report's line (pure)."""
    if state == "open":
        return Check(SLOT, OK, f"`{ROOM_SLOT}` is {EXPLAIN[state]}")
    fix = (
        f"A moderator can run `{prefix} slot open`."
        if allowed
        else f"Writing it needs power level {needed} and the bot has {mine}: raise the bot's "
        "level and run `" + prefix + " slot open`, or send the slot state yourself."
    )
    return Check(
        SLOT,
        WARN,
        f"`{ROOM_SLOT}` is {EXPLAIN[state].split(':')[0]}",
        cause=EXPLAIN[state][0].upper() + EXPLAIN[state][1:] + ". Element Call does not "
        "read slots and is not affected.",
        fix=fix,
    )


async def slot_check(probe: Probe, run: RunState) -> None:
    client = probe.ctx.client
    state, _encrypted = await read_slot(client, run.room_id)
    allowed, needed, mine = await may_write_slot(client, run.room_id)
    run.put(judge_slot(state, allowed, needed, mine, f"!{probe.ctx.settings().command}"))
