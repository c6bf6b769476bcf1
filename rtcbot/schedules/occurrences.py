"""When a schedule happens: the rule, the stored schedule, and its occurrences across DST.

All times handed in and out are timezone-aware; calendar arithmetic is dateutil's (rrule) and
croniter's, time zones are zoneinfo's.

Recurring rules run on the wall clock of their time zone ("09:30 Europe/Berlin" stays 09:30
local across the clock changes). The two odd cases of a wall clock:
* a time the clock skips (02:30 on the night clocks go forward) happens at the moment of the
  jump (03:00), the way cron runs jobs of the skipped hour right after the change;
* a time the clock shows twice (02:30 on the night clocks go back) happens once, the first time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import CroniterError, croniter
from dateutil.rrule import rrulestr

KIND_ONCE = "once"
KIND_RRULE = "rrule"
KIND_CRON = "cron"
RULE_KINDS = (KIND_ONCE, KIND_RRULE, KIND_CRON)
RRULE_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")

NOBODY_CHECK_DEFAULT_S = 600  # without --duration, look for participants 10 min after the start


# -- the model -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScheduleRule:
    """When a schedule happens.

    `spec` by kind: once → the instant as ISO 8601 with offset; rrule → an RFC 5545 RRULE
    (wall-clock fields, interval 1, so it needs no DTSTART); cron → five cron fields.
    """

    kind: str
    text: str  # what the person typed
    tz: str
    spec: str

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "text": self.text, "tz": self.tz, "spec": self.spec})

    @classmethod
    def from_json(cls, raw: str) -> ScheduleRule:
        data = json.loads(raw)
        rule = cls(str(data["kind"]), str(data["text"]), str(data["tz"]), str(data["spec"]))
        if rule.kind not in RULE_KINDS:
            raise ValueError(f"unknown schedule rule kind {rule.kind!r}")
        return rule


@dataclass(frozen=True)
class Schedule:
    """A stored schedule, as the pure functions need it."""

    id: int
    rule: ScheduleRule
    title: str
    created: datetime
    remind_s: int = 0
    ring: bool = False
    record: bool = False
    duration_s: int = 0
    room_id: str = ""
    creator: str = ""

    @property
    def nobody_check_s(self) -> int:
        return self.duration_s or NOBODY_CHECK_DEFAULT_S


def to_ms(dt: datetime) -> int:
    """An instant as stored (milliseconds since the epoch)."""
    return int(dt.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


# -- occurrences -----------------------------------------------------------------------------
def wall_to_instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """The first instant at which the clock of `tz` shows `wall` or later (see module doc)."""
    first = wall.replace(tzinfo=tz, fold=0)
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall:
        return first.astimezone(UTC)  # exists; fold=0 is the first of two readings
    # Skipped by a jump: the jump lies between the two readings of the wall time (PEP 495).
    a = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    b = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    lo, hi = min(a, b), max(a, b)
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid
    # Jumps happen on whole seconds: lo < jump <= hi < lo + 1 s, so the jump is hi's second.
    return hi.replace(microsecond=0)


def _walls(rule: ScheduleRule, after: datetime) -> Iterator[datetime]:
    """Naive wall-clock occurrences strictly after the naive `after`, ascending."""
    if rule.kind == KIND_CRON:
        it = croniter(rule.spec, after)
        while True:
            try:
                yield it.get_next(datetime)
            except CroniterError:
                return
    elif rule.kind == KIND_RRULE:
        # Interval-1 wall-clock rules: any midnight before `after` is a valid DTSTART, and a
        # late one keeps the iteration short.
        start = after.replace(hour=0, minute=0, second=0, microsecond=0)
        yield from rrulestr(rule.spec, dtstart=start).xafter(after, inc=False)
    else:
        raise ValueError(f"not a recurring rule: {rule.kind}")


def occurrences(rule: ScheduleRule, after: datetime) -> Iterator[datetime]:
    """Occurrences (aware, UTC) strictly after `after`, ascending, each instant once."""
    if rule.kind == KIND_ONCE:
        at = datetime.fromisoformat(rule.spec)
        if at > after:
            yield at.astimezone(UTC)
        return
    tz = ZoneInfo(rule.tz)
    # Every wall time that maps to an instant after `after` lies after the wall reading of
    # `after` (the mapping is monotonic), so the naive iteration can start there.
    wall_after = after.astimezone(tz).replace(tzinfo=None)
    last = after
    for wall in _walls(rule, wall_after):
        instant = wall_to_instant(wall, tz)
        if instant > last:  # skips the second pass of a repeated hour, and gap duplicates
            yield instant
            last = instant


def next_occurrence(rule: ScheduleRule, after: datetime) -> datetime | None:
    """The first occurrence strictly after `after` (aware), or None when there is none."""
    if after.tzinfo is None:
        raise ValueError("next_occurrence needs an aware datetime")
    return next(occurrences(rule, after), None)


def latest_before(rule: ScheduleRule, lower: datetime, before: datetime) -> datetime | None:
    """The latest occurrence in (lower, before), looking back in growing windows."""
    span = timedelta(days=1)
    while True:
        lo = max(lower, before - span)
        last = None
        for occ in occurrences(rule, lo):
            if occ >= before:
                break
            last = occ
        if last is not None or lo == lower:
            return last
        span *= 8
