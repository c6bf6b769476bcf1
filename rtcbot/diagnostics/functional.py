"""MSC4171 functional members: is the bot listed as a service member, so that clients do not
count it as a person (a DM with the bot would ring and be named as a group)?"""

from __future__ import annotations

from ..matrix.functional_members import (
    FUNCTIONAL_MEMBERS,
    functional_content,
    levels_for,
    with_service_member,
)
from .probe import Probe, RunState
from .report import FUNCTIONAL, OK, WARN, Check


def judge_functional(listed: bool, needed: int, mine: int) -> Check:
    """The report's line (pure)."""
    if listed:
        return Check(FUNCTIONAL, OK, f"the bot is a service member (`{FUNCTIONAL_MEMBERS}`)")
    return Check(
        FUNCTIONAL,
        WARN,
        "the bot is not listed as a service member",
        cause="Clients count it as a person: a DM with the bot is named and rings like a "
        f"group call. Listing itself in `{FUNCTIONAL_MEMBERS}` needs power level {needed}; "
        f"the bot has {mine}.",
        fix=f"Give the bot power level {needed} (it then lists itself), or add it to "
        f"`service_members` of `{FUNCTIONAL_MEMBERS}` yourself.",
    )


async def functional_check(probe: Probe, run: RunState) -> None:
    client = probe.ctx.client
    content = await functional_content(client, run.room_id)
    listed = with_service_member(content, str(client.mxid)) is None
    needed, mine = await levels_for(client, run.room_id)
    run.put(judge_functional(listed, needed, mine))
