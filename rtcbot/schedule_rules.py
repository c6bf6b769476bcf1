"""Schedules, the pure part: parse `<when>`, find the next occurrence, decide what is due.

No Matrix here. All times handed in and out are timezone-aware; calendar arithmetic is
dateutil's (rrule, relativedelta) and croniter's, time zones are zoneinfo's.

Recurring rules run on the wall clock of their time zone ("09:30 Europe/Berlin" stays 09:30
local across the clock changes). The two odd cases of a wall clock:
* a time the clock skips (02:30 on the night clocks go forward) happens at the moment of the
  jump (03:00), the way cron runs jobs of the skipped hour right after the change;
* a time the clock shows twice (02:30 on the night clocks go back) happens once, the first time.
"""

from __future__ import annotations

import difflib
import json
import re
import shlex
import zoneinfo
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from croniter import CroniterError, croniter
from dateutil.relativedelta import FR, MO, SA, SU, TH, TU, WE, relativedelta, weekday
from dateutil.rrule import rrulestr

KIND_ONCE = "once"
KIND_RRULE = "rrule"
KIND_CRON = "cron"
RULE_KINDS = (KIND_ONCE, KIND_RRULE, KIND_CRON)
RD_WEEKDAYS: tuple[weekday, ...] = (MO, TU, WE, TH, FR, SA, SU)

# What a schedule posts, per occurrence.
REMINDER = "reminder"
START = "start"
NOBODY = "nobody"  # the note when nobody joined
ACTION_KINDS = (REMINDER, START, NOBODY)

NOBODY_CHECK_DEFAULT_S = 600  # without --duration, look for participants 10 min after the start
# Without knowing when the bot came online, an action posted this much after its time is late.
LATE_AFTER = timedelta(seconds=60)
MAX_REMIND_S = 7 * 86_400
MAX_DURATION_S = 86_400

WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
RRULE_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")

EXAMPLES = (
    "`tomorrow 09:30`, `every weekday 09:30`, `every monday 14:00`, `in 10m`, "
    '`2026-05-04 14:00`, or a cron expression in quotes such as `"*/15 9-17 * * 1-5"`'
)


class RuleError(ValueError):
    """Bad user input; the message is a sentence for the person who typed it."""


class UnknownTimezone(RuleError):
    def __init__(self, name: str, suggestion: str | None) -> None:
        hint = f" Did you mean {suggestion}?" if suggestion else ""
        super().__init__(
            f"Unknown time zone `{name}`.{hint} Use a name such as Europe/Berlin, "
            "America/New_York or UTC."
        )
        self.name = name
        self.suggestion = suggestion


# -- time zones ------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _zone_names() -> dict[str, str]:
    return {name.lower(): name for name in zoneinfo.available_timezones()}


def resolve_timezone(name: str) -> str:
    """The canonical IANA name for `name` (case-insensitive); UnknownTimezone otherwise."""
    wanted = name.strip()
    names = _zone_names()
    found = names.get(wanted.lower())
    if found is None and wanted.upper() in ("UTC", "Z", "GMT"):
        found = "UTC"
    if found is None:
        close = difflib.get_close_matches(wanted.lower(), list(names), n=1, cutoff=0.75)
        raise UnknownTimezone(wanted, names[close[0]] if close else None)
    ZoneInfo(found)  # the name list and the database can disagree on odd systems
    return found


# -- durations -------------------------------------------------------------------------------
_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86_400, "day": 86_400, "days": 86_400,
    "w": 604_800, "week": 604_800, "weeks": 604_800,
}  # fmt: skip
_DURATION_PART = re.compile(r"(\d+)\s*([a-z]+)")


def parse_duration(text: str) -> int:
    """Seconds in "10m", "1h30m", "90s", "1h 30m", "10 minutes"; RuleError otherwise."""
    cleaned = text.strip().lower()
    parts = _DURATION_PART.findall(cleaned)
    leftover = _DURATION_PART.sub("", cleaned).replace(",", "").replace("and", "").strip()
    if not parts or leftover or any(unit not in _UNITS for _, unit in parts):
        raise RuleError(
            f"`{text.strip()}` is not a duration. Write it like `10m`, `1h30m` or `90s`."
        )
    return sum(int(n) * _UNITS[unit] for n, unit in parts)


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


# -- the rule --------------------------------------------------------------------------------
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
class ScheduleOptions:
    remind_s: int = 0  # 0: no reminder
    ring: bool = False
    record: bool = False
    duration_s: int = 0  # 0: not given
    tz: str | None = None


@dataclass(frozen=True)
class ParsedAdd:
    rule: ScheduleRule
    title: str
    options: ScheduleOptions


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


# -- parsing <when> --------------------------------------------------------------------------
_DAY_WORDS: dict[str, tuple[int, ...]] = {
    "day": tuple(range(7)),
    "days": tuple(range(7)),
    "weekday": (0, 1, 2, 3, 4),
    "weekdays": (0, 1, 2, 3, 4),
    "workday": (0, 1, 2, 3, 4),
    "workdays": (0, 1, 2, 3, 4),
    "weekend": (5, 6),
    "weekends": (5, 6),
}
for _i, _name in enumerate(WEEKDAY_NAMES):
    _low = _name.lower()
    for _word in (_low, _low + "s", _low[:3], _low[:3] + "."):
        _DAY_WORDS[_word] = (_i,)
for _word, _i in (("tue", 1), ("tues", 1), ("wed", 2), ("thu", 3), ("thur", 3), ("thurs", 3)):
    _DAY_WORDS[_word] = (_i,)

_TIME = re.compile(r"^(\d{1,2})(?:[:.h](\d{2})|h)?(?::(\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)?$")
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,?#LW-]+$")


def _time_of_day(tokens: Sequence[str], i: int) -> tuple[time, int] | None:
    """A time of day at tokens[i] ("09:30", "9:30 pm", "14h", "noon"); (time, tokens used)."""
    if i >= len(tokens):
        return None
    tok = tokens[i].lower()
    if tok == "noon":
        return time(12, 0), 1
    if tok == "midnight":
        return time(0, 0), 1
    used = 1
    if i + 1 < len(tokens) and tokens[i + 1].lower() in ("am", "pm", "a.m.", "p.m."):
        tok += tokens[i + 1].lower()
        used = 2
    m = _TIME.match(tok)
    if m is None:
        return None
    hour, minute, second = int(m[1]), int(m[2] or 0), int(m[3] or 0)
    if m[4]:
        if not 1 <= hour <= 12:
            raise RuleError(f"`{' '.join(tokens[i : i + used])}` is not a time of day.")
        hour = hour % 12 + (12 if m[4].startswith("p") else 0)
    if hour > 23 or minute > 59 or second > 59:
        raise RuleError(f"`{' '.join(tokens[i : i + used])}` is not a time of day.")
    return time(hour, minute, second), used


def _time_after(tokens: Sequence[str], i: int, what: str) -> tuple[time, int]:
    """The time after a day ("every monday [at] 14:00"); RuleError when missing."""
    j = i + 1 if i < len(tokens) and tokens[i].lower() == "at" else i
    found = _time_of_day(tokens, j)
    if found is None:
        raise RuleError(f"Add a time of day after `{what}`, e.g. `{what} 09:30`.")
    return found[0], j - i + found[1]


def _days(tokens: Sequence[str], i: int) -> tuple[tuple[int, ...], int]:
    """Day words from tokens[i]: "weekday", "monday", "mon,wed", "tuesday and thursday"."""
    days: set[int] = set()
    j = i
    while j < len(tokens):
        words = [w for w in tokens[j].lower().split(",") if w]
        if words and all(w in _DAY_WORDS for w in words):
            for w in words:
                days.update(_DAY_WORDS[w])
        elif tokens[j].lower() in ("and", "&", ",") and days:
            pass
        else:
            break
        j += 1
    while j > i and tokens[j - 1].lower() in ("and", "&", ","):
        j -= 1  # "every monday and" + title: the "and" was not ours
    return tuple(sorted(days)), j - i


def _in_tz(now: datetime, tz: str) -> datetime:
    return now.astimezone(ZoneInfo(tz))


def _once(text: str, tz: str, at: datetime, now: datetime) -> ScheduleRule:
    # Whole seconds: the database keeps milliseconds, and "already handled" compares them.
    at = at.astimezone(UTC).replace(microsecond=0)
    if at <= now:
        ago = format_delta((now - at).total_seconds())
        raise RuleError(f"`{text}` is in the past ({ago} ago). Pick a time that is still ahead.")
    return ScheduleRule(KIND_ONCE, text, tz, at.isoformat())


def _cron(expr: str, tz: str) -> ScheduleRule | None:
    fields = expr.split()
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        return None
    if not fields[0][0].isdigit() and fields[0][0] != "*":
        return None
    if not croniter.is_valid(expr):
        return None
    return ScheduleRule(KIND_CRON, " ".join(fields), tz, " ".join(fields))


def _parse_when_prefix(
    tokens: Sequence[str], now: datetime, tz: str
) -> tuple[ScheduleRule, int] | None:
    """The `<when>` at the start of `tokens` and how many tokens it used, or None."""
    if not tokens:
        return None
    first = tokens[0].lower()

    # A quoted cron expression arrives as one token with spaces; unquoted, as five tokens.
    if " " in tokens[0].strip():
        rule = _cron(tokens[0], tz)
        if rule is not None:
            return rule, 1
    if len(tokens) >= 5:
        rule = _cron(" ".join(tokens[:5]), tz)
        if rule is not None:
            return rule, 5

    if first == "in":  # "in 10m", "in 1h 30m", "in 10 minutes"
        for used in range(min(len(tokens) - 1, 4), 0, -1):
            try:
                secs = parse_duration(" ".join(tokens[1 : 1 + used]))
            except RuleError:
                continue
            if secs < 1:
                raise RuleError("`in` needs a duration of at least one second.")
            text = " ".join(tokens[: 1 + used])
            instant = (now + timedelta(seconds=secs)).replace(microsecond=0)
            return _once(text, tz, instant, now), 1 + used
        raise RuleError("Say how long from now, e.g. `in 10m` or `in 1h30m`.")

    if first in ("every", "each", "daily"):
        if first == "daily":
            days, used = tuple(range(7)), 0
        else:
            days, used = _days(tokens, 1)
            if not days:
                raise RuleError(
                    "Say which days after `every`: `every day`, `every weekday`, "
                    "`every monday`, `every tuesday and thursday`."
                )
        what = " ".join(tokens[: 1 + used])
        at, used_t = _time_after(tokens, 1 + used, what)
        text = " ".join(tokens[: 1 + used + used_t])
        return _weekly_rule(text, tz, days, at), 1 + used + used_t

    # One day: "today 18:00", "tomorrow 09:30", "monday 14:00", "next friday 10:00".
    day_word, skip = first, 1
    if first == "next" and len(tokens) > 1:
        day_word, skip = tokens[1].lower(), 2
    local_now = _in_tz(now, tz)
    day: date | None = None
    if day_word == "today" and skip == 1:
        day = local_now.date()
    elif day_word == "tomorrow" and skip == 1:
        day = local_now.date() + relativedelta(days=1)
    elif day_word in _DAY_WORDS and len(_DAY_WORDS[day_word]) == 1:
        wd: weekday = RD_WEEKDAYS[_DAY_WORDS[day_word][0]]
        # "next monday" said on a Monday means in a week, not today.
        day = local_now.date() + relativedelta(days=skip - 1, weekday=wd(+1))
    if day is not None:
        what = " ".join(tokens[:skip])
        at, used_t = _time_after(tokens, skip, what)
        text = " ".join(tokens[: skip + used_t])
        instant = _wall_to_instant(datetime.combine(day, at), ZoneInfo(tz))
        if day_word in _DAY_WORDS and instant <= now:  # "monday 09:00" on Monday at 10:00
            day += relativedelta(weeks=1)
            instant = _wall_to_instant(datetime.combine(day, at), ZoneInfo(tz))
        return _once(text, tz, instant, now), skip + used_t

    # ISO 8601: "2026-05-04T14:00", "2026-05-04T14:00+02:00", "2026-05-04 14:00".
    iso = _iso_datetime(tokens[0])
    if iso is not None:
        if iso.tzinfo is None:
            return _once(tokens[0], tz, _wall_to_instant(iso, ZoneInfo(tz)), now), 1
        return _once(tokens[0], tz, iso, now), 1
    try:
        day = date.fromisoformat(tokens[0])
    except ValueError:
        day = None
    if day is not None:
        at, used_t = _time_after(tokens, 1, tokens[0])
        text = " ".join(tokens[: 1 + used_t])
        return _once(text, tz, _wall_to_instant(datetime.combine(day, at), ZoneInfo(tz)), now), (
            1 + used_t
        )

    # A bare time: the next time the clock shows it (today or tomorrow).
    at_word = 1 if first == "at" else 0
    clock = tokens[at_word].lower() if at_word < len(tokens) else ""
    next_word = tokens[at_word + 1].lower() if at_word + 1 < len(tokens) else ""
    looks_like_time = (
        bool(at_word)
        or ":" in clock
        or clock in ("noon", "midnight")
        or bool(re.fullmatch(r"\d{1,2}(am|pm)", clock))
        or (clock.isdigit() and next_word in ("am", "pm"))
    )
    found = _time_of_day(tokens, at_word) if looks_like_time else None
    if found is not None:
        at, used_t = found
        used = used_t + (1 if first == "at" else 0)
        text = " ".join(tokens[:used])
        instant = _wall_to_instant(datetime.combine(local_now.date(), at), ZoneInfo(tz))
        if instant <= now:
            tomorrow = local_now.date() + relativedelta(days=1)
            instant = _wall_to_instant(datetime.combine(tomorrow, at), ZoneInfo(tz))
        return _once(text, tz, instant, now), used
    return None


def _iso_datetime(text: str) -> datetime | None:
    if "T" not in text.upper() and " " not in text.strip():
        return None
    try:
        return datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        return None


def _weekly_rule(text: str, tz: str, days: tuple[int, ...], at: time) -> ScheduleRule:
    by_day = "" if len(days) == 7 else ";BYDAY=" + ",".join(RRULE_DAYS[d] for d in days)
    freq = "DAILY" if len(days) == 7 else "WEEKLY"
    spec = f"RRULE:FREQ={freq}{by_day};BYHOUR={at.hour};BYMINUTE={at.minute};BYSECOND={at.second}"
    return ScheduleRule(KIND_RRULE, text, tz, spec)


def parse_when(text: str, now: datetime, tz: str) -> ScheduleRule:
    """Parse a whole `<when>` text (nothing else after it)."""
    tokens = _split(text)
    parsed = _parse_when_prefix(tokens, now, tz)
    if parsed is None or parsed[1] != len(tokens):
        raise RuleError(f"I don't understand the time `{text}`. Try {EXAMPLES}.")
    return _checked(parsed[0], now)


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def _checked(rule: ScheduleRule, now: datetime) -> ScheduleRule:
    if next_occurrence(rule, now) is None:
        raise RuleError(f"`{rule.text}` never happens from now on.")
    return rule


_FLAG_OPTIONS = ("ring", "record")
_VALUE_OPTIONS = ("remind", "duration", "tz")


def parse_add(args: Sequence[str], now: datetime, default_tz: str) -> ParsedAdd:
    """`<when> <title> [--remind 10m] [--ring] [--record] [--duration 30m] [--tz Zone]`."""
    rest: list[str] = []
    values: dict[str, str] = {}
    flags: set[str] = set()
    i = 0
    while i < len(args):
        tok = re.sub(r"^(—|–|−)", "--", args[i])  # phones turn "--" into a dash
        if not tok.startswith("--") or len(tok) == 2:
            rest.append(args[i])
            i += 1
            continue
        name, eq, value = tok[2:].partition("=")
        name = name.lower()
        if name in _FLAG_OPTIONS and not eq:
            flags.add(name)
        elif name in _VALUE_OPTIONS:
            if not eq:
                if i + 1 >= len(args):
                    raise RuleError(f"`--{name}` needs a value, e.g. {_option_example(name)}.")
                i += 1
                value = args[i]
            values[name] = value
        else:
            raise RuleError(
                f"Unknown option `{args[i]}`. Options: `--remind 10m`, `--ring`, `--record`, "
                "`--duration 30m`, `--tz Europe/Berlin`."
            )
        i += 1

    tz = resolve_timezone(values["tz"]) if "tz" in values else default_tz
    remind_s = _bounded(values, "remind", MAX_REMIND_S)
    duration_s = _bounded(values, "duration", MAX_DURATION_S)

    if not rest:
        raise RuleError(f"Say when: {EXAMPLES}.")
    parsed = _parse_when_prefix(rest, now, tz)
    if parsed is None:
        raise RuleError(f"I don't understand the time `{' '.join(rest[:3])}`. Try {EXAMPLES}.")
    rule, used = parsed
    title = " ".join(rest[used:]).strip()
    if not title:
        raise RuleError(f"Add a title after the time, e.g. `{rule.text} Standup`.")
    options = ScheduleOptions(
        remind_s=remind_s,
        ring="ring" in flags,
        record="record" in flags,
        duration_s=duration_s,
        tz=tz if "tz" in values else None,
    )
    return ParsedAdd(_checked(rule, now), title, options)


def _option_example(name: str) -> str:
    return {"remind": "`--remind 10m`", "duration": "`--duration 30m`"}.get(
        name, "`--tz Europe/Berlin`"
    )


def _bounded(values: Mapping[str, str], name: str, maximum: int) -> int:
    if name not in values:
        return 0
    secs = parse_duration(values[name])
    if not 0 < secs <= maximum:
        raise RuleError(
            f"`--{name}` must be more than 0 and at most {format_delta(maximum)}, "
            f"got {values[name]}."
        )
    return secs


# -- occurrences -----------------------------------------------------------------------------
def _wall_to_instant(wall: datetime, tz: ZoneInfo) -> datetime:
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
        instant = _wall_to_instant(wall, tz)
        if instant > last:  # skips the second pass of a repeated hour, and gap duplicates
            yield instant
            last = instant


def next_occurrence(rule: ScheduleRule, after: datetime) -> datetime | None:
    """The first occurrence strictly after `after` (aware), or None when there is none."""
    if after.tzinfo is None:
        raise ValueError("next_occurrence needs an aware datetime")
    return next(occurrences(rule, after), None)


def _latest_before(rule: ScheduleRule, lower: datetime, before: datetime) -> datetime | None:
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


# -- descriptions ----------------------------------------------------------------------------
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


def format_clock(local: datetime | time) -> str:
    return local.strftime("%H:%M:%S" if local.second else "%H:%M")


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


# -- what is due -----------------------------------------------------------------------------
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
        too_old = _latest_before(schedule.rule, lower, oldest_ok) if first < oldest_ok else None
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
