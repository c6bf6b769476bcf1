"""What other clients make of memberships, checklist 14–16: sticky events (Element Call's
matrix_2_0 memberships), the homeserver's clock against the bot's (expiry is judged across
clocks), and ghosts (expired memberships still in the room state)."""

from __future__ import annotations

import time

from mautrix.api import Method, Path

from .probe import Probe, RunState, versions_and_caps
from .pure_checks import check_clock, check_sticky
from .report import CLOCK, GHOSTS, OK, SKIP, STICKY, WARN, Check, fmt_ms

MAX_GHOSTS_NAMED = 5  # in the summary; --verbose lists them all


async def sticky_events(probe: Probe, run: RunState) -> None:
    info = await versions_and_caps(run, STICKY)
    if info is not None:
        run.put(check_sticky(info[0]))


async def clock_skew(probe: Probe, run: RunState) -> None:
    assert run.event_id is not None
    evt = await probe.matrix(Method.GET, Path.v3.rooms[run.room_id].event[run.event_id])
    ots = evt.get("origin_server_ts") if isinstance(evt, dict) else None
    if not isinstance(ots, int):
        run.put(Check(CLOCK, SKIP, "the homeserver gave the report no timestamp"))
        return
    midpoint = (run.sent_before_ms + run.sent_after_ms) / 2
    run.put(check_clock(ots - midpoint, run.sent_after_ms - run.sent_before_ms))


async def ghost_memberships(probe: Probe, run: RunState) -> None:
    room = await probe.calls.room(run.room_id)
    now = int(time.time() * 1000)
    ghosts = room.ghosts(now)
    if not ghosts:
        run.put(Check(GHOSTS, OK, "none"))
        return
    names = [f"{g.user_id} ({g.device_id})" for g in ghosts]
    more = len(names) - MAX_GHOSTS_NAMED
    shown = ", ".join(names[:MAX_GHOSTS_NAMED]) + (f" and {more} more" if more > 0 else "")
    run.put(
        Check(
            GHOSTS,
            WARN,
            f"{len(ghosts)} expired membership{'s' if len(ghosts) != 1 else ''} still in the "
            f"room state: {shown}",
            cause="Clients that crashed or lost the network without a delayed leave (the "
            "homeserver lacks delayed events, or the client did not use them). Clients "
            "ignore expired memberships.",
            fix="Nothing breaks; they go away when those devices join again. To avoid new "
            "ones, enable delayed events on the homeserver.",
            details=tuple(
                f"{g.user_id} / {g.device_id}: expired {fmt_ms(now - (g.expires_at or now))} ago"
                for g in ghosts
            ),
        )
    )
