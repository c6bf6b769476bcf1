"""How schedules read to people: durations, clocks, days, and a rule in words."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time
from zoneinfo import ZoneInfo

from .occurrences import KIND_CRON, KIND_ONCE, RRULE_DAYS, ScheduleRule

WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_delta(seconds: float) -> str:
    """A short duration for people: "45 s", "10 min", "1 h 30 min", "2 d 3 h"."""
    secs = max(0, round(seconds))
    if secs < 60:
        return f"{secs} s"
    if secs < 3600:
        mins, rest = divmod(secs, 60)
        return f"{mins} min {rest} s" if rest and secs < 600 else f"{round(secs / 60)} min"
    if secs < 86_400:
        mins = round(secs / 60)
        hours, mins = divmod(mins, 60)
        return f"{hours} h {mins} min" if mins else f"{hours} h"
    hours = round(secs / 3600)
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def format_clock(local: datetime | time) -> str:
    """ "09:30", or "09:30:15" when the seconds are not zero."""
    return local.strftime("%H:%M:%S" if local.second else "%H:%M")


def format_day(dt: datetime, tz: str, now: datetime | None = None, year: bool = False) -> str:
    """ "Mon 30 Mar" in `tz` (with the year when it is not this year, or when asked)."""
    local = dt.astimezone(ZoneInfo(tz))
    day = f"{WEEKDAY_NAMES[local.weekday()][:3]} {local.day} {MONTHS[local.month - 1]}"
    if year or (now is not None and now.astimezone(ZoneInfo(tz)).year != local.year):
        day += f" {local.year}"
    return day


def format_local(dt: datetime, tz: str, now: datetime | None = None, year: bool = False) -> str:
    """ "Mon 30 Mar 09:30" in `tz`."""
    return f"{format_day(dt, tz, now, year)} {format_clock(dt.astimezone(ZoneInfo(tz)))}"


def _join_words(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def describe(rule: ScheduleRule) -> str:
    """ "every weekday at 09:30 (Europe/Berlin)", "once on Mon 30 Mar 2026 at 09:30 (UTC)"."""
    if rule.kind == KIND_ONCE:
        local = datetime.fromisoformat(rule.spec).astimezone(ZoneInfo(rule.tz))
        return (
            f"once on {format_day(local, rule.tz, year=True)} at {format_clock(local)} ({rule.tz})"
        )
    if rule.kind == KIND_CRON:
        return f"on the cron schedule `{rule.spec}` ({rule.tz})"
    parts = dict(p.split("=", 1) for p in rule.spec.removeprefix("RRULE:").split(";"))
    at = time(int(parts["BYHOUR"]), int(parts["BYMINUTE"]), int(parts.get("BYSECOND", 0)))
    days = [RRULE_DAYS.index(d) for d in parts["BYDAY"].split(",")] if "BYDAY" in parts else []
    if not days or len(days) == 7:
        when = "every day"
    elif days == [0, 1, 2, 3, 4]:
        when = "every weekday"
    elif days == [5, 6]:
        when = "every Saturday and Sunday"
    else:
        when = "every " + _join_words([WEEKDAY_NAMES[d] for d in days])
    return f"{when} at {format_clock(at)} ({rule.tz})"
