"""Parsing what people type: `<when>`, durations, time zones and the options of
`schedule add`. Errors are RuleError, whose message is a sentence for the person."""

from __future__ import annotations

import difflib
import re
import shlex
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from croniter import croniter
from dateutil.relativedelta import FR, MO, SA, SU, TH, TU, WE, relativedelta, weekday

from .format import WEEKDAY_NAMES, format_delta
from .occurrences import (
    KIND_CRON,
    KIND_ONCE,
    KIND_RRULE,
    RRULE_DAYS,
    ScheduleRule,
    next_occurrence,
    wall_to_instant,
)

RD_WEEKDAYS: tuple[weekday, ...] = (MO, TU, WE, TH, FR, SA, SU)
MAX_REMIND_S = 7 * 86_400
MAX_DURATION_S = 86_400

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


# -- the words of <when> ---------------------------------------------------------------------
def _build_day_words() -> dict[str, tuple[int, ...]]:
    words: dict[str, tuple[int, ...]] = {
        "day": tuple(range(7)),
        "days": tuple(range(7)),
        "weekday": (0, 1, 2, 3, 4),
        "weekdays": (0, 1, 2, 3, 4),
        "workday": (0, 1, 2, 3, 4),
        "workdays": (0, 1, 2, 3, 4),
        "weekend": (5, 6),
        "weekends": (5, 6),
    }
    for i, name in enumerate(WEEKDAY_NAMES):
        low = name.lower()
        for word in (low, low + "s", low[:3], low[:3] + "."):
            words[word] = (i,)
    for word, i in (("tue", 1), ("tues", 1), ("wed", 2), ("thu", 3), ("thur", 3), ("thurs", 3)):
        words[word] = (i,)
    return words


_DAY_WORDS = _build_day_words()
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


def _iso_datetime(text: str) -> datetime | None:
    if "T" not in text.upper() and " " not in text.strip():
        return None
    try:
        return datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        return None


# -- the rules they make ---------------------------------------------------------------------
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


def _weekly_rule(text: str, tz: str, days: tuple[int, ...], at: time) -> ScheduleRule:
    by_day = "" if len(days) == 7 else ";BYDAY=" + ",".join(RRULE_DAYS[d] for d in days)
    freq = "DAILY" if len(days) == 7 else "WEEKLY"
    spec = f"RRULE:FREQ={freq}{by_day};BYHOUR={at.hour};BYMINUTE={at.minute};BYSECOND={at.second}"
    return ScheduleRule(KIND_RRULE, text, tz, spec)


# -- <when> at the start of the tokens -------------------------------------------------------
# Each form returns (rule, tokens used), or None when the tokens are not in its shape; a form
# that recognises its shape but finds it wrong raises RuleError. They are tried in order.
_Found = tuple[ScheduleRule, int]


def _cron_form(tokens: Sequence[str], now: datetime, tz: str) -> _Found | None:
    # A quoted cron expression arrives as one token with spaces; unquoted, as five tokens.
    if " " in tokens[0].strip():
        rule = _cron(tokens[0], tz)
        if rule is not None:
            return rule, 1
    if len(tokens) >= 5:
        rule = _cron(" ".join(tokens[:5]), tz)
        if rule is not None:
            return rule, 5
    return None


def _in_form(tokens: Sequence[str], now: datetime, tz: str) -> _Found | None:
    """ "in 10m", "in 1h 30m", "in 10 minutes"."""
    if tokens[0].lower() != "in":
        return None
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


def _every_form(tokens: Sequence[str], now: datetime, tz: str) -> _Found | None:
    """ "every weekday 09:30", "each monday at 14:00", "daily 08:00"."""
    first = tokens[0].lower()
    if first not in ("every", "each", "daily"):
        return None
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


def _day_form(tokens: Sequence[str], now: datetime, tz: str) -> _Found | None:
    """One day: "today 18:00", "tomorrow 09:30", "monday 14:00", "next friday 10:00"."""
    first = tokens[0].lower()
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
    if day is None:
        return None
    what = " ".join(tokens[:skip])
    at, used_t = _time_after(tokens, skip, what)
    text = " ".join(tokens[: skip + used_t])
    instant = wall_to_instant(datetime.combine(day, at), ZoneInfo(tz))
    if day_word in _DAY_WORDS and instant <= now:  # "monday 09:00" on Monday at 10:00
        day += relativedelta(weeks=1)
        instant = wall_to_instant(datetime.combine(day, at), ZoneInfo(tz))
    return _once(text, tz, instant, now), skip + used_t


def _iso_form(tokens: Sequence[str], now: datetime, tz: str) -> _Found | None:
    """ISO 8601: "2026-05-04T14:00", "2026-05-04T14:00+02:00", "2026-05-04 14:00"."""
    iso = _iso_datetime(tokens[0])
    if iso is not None:
        if iso.tzinfo is None:
            return _once(tokens[0], tz, wall_to_instant(iso, ZoneInfo(tz)), now), 1
        return _once(tokens[0], tz, iso, now), 1
    try:
        day = date.fromisoformat(tokens[0])
    except ValueError:
        return None
    at, used_t = _time_after(tokens, 1, tokens[0])
    text = " ".join(tokens[: 1 + used_t])
    instant = wall_to_instant(datetime.combine(day, at), ZoneInfo(tz))
    return _once(text, tz, instant, now), 1 + used_t


def _clock_form(tokens: Sequence[str], now: datetime, tz: str) -> _Found | None:
    """A bare time: the next time the clock shows it (today or tomorrow)."""
    first = tokens[0].lower()
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
    if found is None:
        return None
    at, used_t = found
    used = used_t + (1 if first == "at" else 0)
    text = " ".join(tokens[:used])
    local_now = _in_tz(now, tz)
    instant = wall_to_instant(datetime.combine(local_now.date(), at), ZoneInfo(tz))
    if instant <= now:
        tomorrow = local_now.date() + relativedelta(days=1)
        instant = wall_to_instant(datetime.combine(tomorrow, at), ZoneInfo(tz))
    return _once(text, tz, instant, now), used


_WHEN_FORMS = (_cron_form, _in_form, _every_form, _day_form, _iso_form, _clock_form)


def _parse_when_prefix(tokens: Sequence[str], now: datetime, tz: str) -> _Found | None:
    """The `<when>` at the start of `tokens` and how many tokens it used, or None."""
    if not tokens:
        return None
    for form in _WHEN_FORMS:
        found = form(tokens, now, tz)
        if found is not None:
            return found
    return None


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def _checked(rule: ScheduleRule, now: datetime) -> ScheduleRule:
    if next_occurrence(rule, now) is None:
        raise RuleError(f"`{rule.text}` never happens from now on.")
    return rule


def parse_when(text: str, now: datetime, tz: str) -> ScheduleRule:
    """Parse a whole `<when>` text (nothing else after it)."""
    tokens = _split(text)
    parsed = _parse_when_prefix(tokens, now, tz)
    if parsed is None or parsed[1] != len(tokens):
        raise RuleError(f"I don't understand the time `{text}`. Try {EXAMPLES}.")
    return _checked(parsed[0], now)


# -- schedule add ----------------------------------------------------------------------------
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
