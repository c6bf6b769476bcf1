"""What is due: the actions of a schedule per occurrence (reminder, start, nobody-joined note),
which of them to post now, which were missed, and when the next one is due. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .format import format_delta
from .occurrences import Schedule, latest_before, next_occurrence, occurrences

# What a schedule posts, per occurrence.
REMINDER = "reminder"
START = "start"
NOBODY = "nobody"  # the note when nobody joined
ACTION_KINDS = (REMINDER, START, NOBODY)

# Without knowing when the bot came online, an action posted this much after its time is late.
LATE_AFTER = timedelta(seconds=60)


@dataclass(frozen=True)
class Action:
    """Something a schedule posts for one occurrence, or an occurrence it skips."""

    kind: str  # REMINDER, START or NOBODY
    occurrence: datetime  # the start time of the occurrence
    due: datetime  # when this action was due
    late: bool = False
    skipped: bool = False
    reason: str = field(default="", compare=False)


def action_kinds(schedule: Schedule, nobody_note: bool = True) -> tuple[str, ...]:
    kinds = [REMINDER] if schedule.remind_s > 0 else []
    kinds.append(START)
    if nobody_note:
        kinds.append(NOBODY)
    return tuple(kinds)


def action_offset(schedule: Schedule, kind: str) -> timedelta:
    """When `kind` is due, relative to the occurrence."""
    if kind == REMINDER:
        return -timedelta(seconds=schedule.remind_s)
    if kind == NOBODY:
        return timedelta(seconds=schedule.nobody_check_s)
    return timedelta(0)


def _baseline(schedule: Schedule, kind: str, last_fired: Mapping[str, datetime]) -> datetime:
    """Only occurrences after this count for `kind`: after the last one handled, and after
    the schedule was created (a reminder only when its own time is after the creation)."""
    off = action_offset(schedule, kind)
    floor = schedule.created + max(timedelta(0), -off)
    last = last_fired.get(kind)
    return max(last, floor) if last is not None else floor


def due_actions(
    schedule: Schedule,
    last_fired: Mapping[str, datetime],
    now: datetime,
    grace: timedelta,
    *,
    online_since: datetime | None = None,
    nobody_note: bool = True,
) -> list[Action]:
    """What to do now. `last_fired`: per action kind, the latest occurrence already handled.

    Per kind, only the latest due occurrence is posted, if it is at most `grace` late (marked
    late when it was due before `online_since`, i.e. while the bot was offline); anything
    older is returned as skipped, so the caller records it and logs it. Handing the result
    back in `last_fired` makes every occurrence come out at most once.

    The grace window is for what was missed while offline: what fell due while the bot was
    up gets at least LATE_AFTER, so a slow tick never skips (even with a grace of 0).
    """
    up_for = now - online_since if online_since is not None else LATE_AFTER
    grace = max(grace, min(LATE_AFTER, up_for))
    out: list[Action] = []
    for kind in action_kinds(schedule, nobody_note):
        off = action_offset(schedule, kind)
        lower = _baseline(schedule, kind, last_fired)
        cutoff = now - off  # occurrences up to here are due
        first = next_occurrence(schedule.rule, lower)
        if first is None or first > cutoff:
            continue
        oldest_ok = now - grace - off  # occurrences before this are beyond the grace window
        too_old = latest_before(schedule.rule, lower, oldest_ok) if first < oldest_ok else None
        in_grace: list[datetime] = []
        for occ in occurrences(schedule.rule, too_old or lower):
            if occ > cutoff:
                break
            in_grace.append(occ)
        if not in_grace:
            assert too_old is not None
            late_by = format_delta((now - (too_old + off)).total_seconds())
            out.append(
                Action(
                    kind,
                    too_old,
                    too_old + off,
                    late=True,
                    skipped=True,
                    reason=f"missed by {late_by}, more than the grace window of "
                    f"{format_delta(grace.total_seconds())}",
                )
            )
            continue
        occ = in_grace[-1]
        earlier = in_grace[-2] if len(in_grace) > 1 else too_old
        if earlier is not None:
            out.append(
                Action(
                    kind,
                    earlier,
                    earlier + off,
                    late=True,
                    skipped=True,
                    reason="missed; only the latest due occurrence is posted",
                )
            )
        due = occ + off
        late = due < online_since if online_since is not None else now - due > LATE_AFTER
        if kind == REMINDER and occ <= now:
            out.append(
                Action(kind, occ, due, late, skipped=True, reason="the call had already started")
            )
        else:
            out.append(Action(kind, occ, due, late))
    return out


def next_due(
    schedule: Schedule, last_fired: Mapping[str, datetime], nobody_note: bool = True
) -> datetime | None:
    """When the next action of the schedule is due (possibly already past), or None if
    nothing is left to do (a one-off that is over)."""
    times = []
    for kind in action_kinds(schedule, nobody_note):
        occ = next_occurrence(schedule.rule, _baseline(schedule, kind, last_fired))
        if occ is not None:
            times.append(occ + action_offset(schedule, kind))
    return min(times, default=None)
