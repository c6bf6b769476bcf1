"""Schedules, the pure part: `<when>` parsing, occurrences across DST, and what is due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtcbot.config import ConfigError
from rtcbot.schedules import (
    KIND_CRON,
    KIND_ONCE,
    KIND_RRULE,
    NOBODY,
    REMINDER,
    START,
    Action,
    RuleError,
    Schedule,
    ScheduleRule,
    UnknownTimezone,
    describe,
    due_actions,
    format_delta,
    next_due,
    next_occurrence,
    occurrences,
    parse_add,
    parse_duration,
    parse_when,
    resolve_timezone,
)
from rtcbot.settings import parse_settings

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"
# Thursday 26 March 2026, 10:00 UTC (11:00 in Berlin); Berlin goes to summer time on Sunday 29.
NOW = datetime(2026, 3, 26, 10, 0, tzinfo=UTC)


def local(dt: datetime | None, tz: str) -> datetime:
    assert dt is not None
    return dt.astimezone(ZoneInfo(tz))


def first_n(rule: ScheduleRule, after: datetime, n: int) -> list[datetime]:
    it = occurrences(rule, after)
    return [next(it) for _ in range(n)]


# -- parsing -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("when", "kind", "description", "first_local"),
    [
        ("tomorrow 09:30", KIND_ONCE, "once on Fri 27 Mar 2026 at 09:30", "2026-03-27 09:30"),
        ("today 18:00", KIND_ONCE, "once on Thu 26 Mar 2026 at 18:00", "2026-03-26 18:00"),
        ("tomorrow at 9am", KIND_ONCE, "once on Fri 27 Mar 2026 at 09:00", "2026-03-27 09:00"),
        ("monday 14:00", KIND_ONCE, "once on Mon 30 Mar 2026 at 14:00", "2026-03-30 14:00"),
        (
            "next thursday 2:30 pm",
            KIND_ONCE,
            "once on Thu 2 Apr 2026 at 14:30",
            "2026-04-02 14:30",
        ),
        ("at 10:00", KIND_ONCE, "once on Fri 27 Mar 2026 at 10:00", "2026-03-27 10:00"),
        ("12:00", KIND_ONCE, "once on Thu 26 Mar 2026 at 12:00", "2026-03-26 12:00"),
        ("every weekday 09:30", KIND_RRULE, "every weekday at 09:30", "2026-03-27 09:30"),
        ("every monday 14:00", KIND_RRULE, "every Monday at 14:00", "2026-03-30 14:00"),
        ("every day at 07:15", KIND_RRULE, "every day at 07:15", "2026-03-27 07:15"),
        ("daily 07:15", KIND_RRULE, "every day at 07:15", "2026-03-27 07:15"),
        (
            "every tue and thu 9:00",
            KIND_RRULE,
            "every Tuesday and Thursday at 09:00",
            "2026-03-31 09:00",
        ),
        ("every mon,wed,fri 8h", KIND_RRULE, "every Monday, Wednesday and Friday at 08:00", ""),
        ("every weekend 10:00", KIND_RRULE, "every Saturday and Sunday at 10:00", ""),
        ("2026-04-01T10:00", KIND_ONCE, "once on Wed 1 Apr 2026 at 10:00", "2026-04-01 10:00"),
        ("2026-04-01 10:00", KIND_ONCE, "once on Wed 1 Apr 2026 at 10:00", "2026-04-01 10:00"),
        # An explicit offset wins over the room's time zone (16:00 in Berlin is 10:00 -04:00).
        ("2026-04-01T10:00-04:00", KIND_ONCE, "once on Wed 1 Apr 2026 at 16:00", ""),
        ("2026-04-01T08:00Z", KIND_ONCE, "once on Wed 1 Apr 2026 at 10:00", ""),
        ('"*/15 9-17 * * 1-5"', KIND_CRON, "on the cron schedule `*/15 9-17 * * 1-5`", ""),
        ("0 9 * * mon-fri", KIND_CRON, "on the cron schedule `0 9 * * mon-fri`", ""),
        ("in 10 minutes", KIND_ONCE, "once on Thu 26 Mar 2026 at 11:10", "2026-03-26 11:10"),
        ("in 3s", KIND_ONCE, "once on Thu 26 Mar 2026 at 11:00:03", "2026-03-26 11:00:03"),
        ("in 1h 30m", KIND_ONCE, "once on Thu 26 Mar 2026 at 12:30", "2026-03-26 12:30"),
    ],
)
def test_when_forms(when: str, kind: str, description: str, first_local: str) -> None:
    rule = parse_when(when, NOW, BERLIN)
    assert rule.kind == kind
    assert describe(rule) == f"{description} ({BERLIN})"
    if first_local:
        first = local(next_occurrence(rule, NOW), BERLIN)
        fmt = "%Y-%m-%d %H:%M:%S" if first.second else "%Y-%m-%d %H:%M"
        assert first.strftime(fmt) == first_local


def test_cron_at_the_start_of_add_quoted_or_not() -> None:
    quoted = parse_add(["*/15 9-17 * * 1-5", "Office", "hours"], NOW, BERLIN)
    bare = parse_add("*/15 9-17 * * 1-5 Office hours".split(), NOW, BERLIN)
    assert quoted.rule == bare.rule
    assert quoted.rule.kind == KIND_CRON and quoted.rule.spec == "*/15 9-17 * * 1-5"
    assert quoted.title == bare.title == "Office hours"
    # Thursday 11:00 Berlin → 11:15 the same day.
    assert local(next_occurrence(quoted.rule, NOW), BERLIN).strftime("%H:%M") == "11:15"


def test_add_with_options_anywhere() -> None:
    args = "every weekday 09:30 --remind 10m Daily standup --ring --duration=1h30m".split()
    parsed = parse_add(args, NOW, BERLIN)
    assert parsed.title == "Daily standup"
    assert parsed.options.remind_s == 600
    assert parsed.options.duration_s == 5400
    assert parsed.options.ring and not parsed.options.record
    assert parsed.options.tz is None and parsed.rule.tz == BERLIN


def test_add_tz_option_and_phone_dashes() -> None:
    parsed = parse_add(
        ["tomorrow", "9:00", "Sync", "—tz", "america/new_york", "—record"], NOW, "UTC"
    )
    assert parsed.rule.tz == NEW_YORK == parsed.options.tz
    assert parsed.options.record
    assert local(next_occurrence(parsed.rule, NOW), NEW_YORK).strftime("%d %H:%M") == "27 09:00"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["yesterday", "9:00", "Standup"], "I don't understand the time `yesterday 9:00"),
        (["Standup"], "I don't understand the time `Standup`"),
        ([], "Say when"),
        (["tomorrow", "9:00"], "Add a title after the time"),
        (["tomorrow", "Standup"], "Add a time of day after `tomorrow`"),
        (["every", "9:00", "Standup"], "Say which days after `every`"),
        (["every", "monday", "25:00", "Standup"], "`25:00` is not a time of day"),
        (["2020-01-01", "10:00", "Old"], "is in the past"),
        (["today", "08:00", "Early"], "`today 08:00` is in the past (3 h ago)"),
        (["2026-03-26T09:00Z", "Old"], "is in the past"),
        (["0 0 30 2 *", "Never"], "never happens"),
        (["in", "5", "lightyears", "Far"], "Say how long from now"),
        (["tomorrow", "9:00", "x", "--tz", "Europe/Berln"], "Did you mean Europe/Berlin?"),
        (["tomorrow", "9:00", "x", "--tz", "Mars/Olympus"], "Unknown time zone `Mars/Olympus`"),
        (["tomorrow", "9:00", "x", "--remind", "10"], "`10` is not a duration"),
        (["tomorrow", "9:00", "x", "--remind", "30d"], "`--remind` must be more than 0"),
        (["tomorrow", "9:00", "x", "--remind"], "`--remind` needs a value"),
        (["tomorrow", "9:00", "x", "--loud"], "Unknown option `--loud`"),
    ],
)
def test_clear_errors(args: list[str], message: str) -> None:
    with pytest.raises(RuleError) as err:
        parse_add(args, NOW, BERLIN)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10m", 600),
        ("1h30m", 5400),
        ("90s", 90),
        ("1h 30m", 5400),
        ("10 minutes", 600),
        ("2 hours", 7200),
        ("1d", 86_400),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "ten minutes", "5 lightyears", "10m extra", "-5m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(RuleError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(3, "3 s"), (90, "1 min 30 s"), (599.7, "10 min"), (3600, "1 h"), (5400, "1 h 30 min")],
)
def test_format_delta(seconds: float, text: str) -> None:
    assert format_delta(seconds) == text


def test_time_zones() -> None:
    assert resolve_timezone("europe/berlin") == BERLIN
    assert resolve_timezone("utc") == "UTC"
    with pytest.raises(UnknownTimezone) as err:
        resolve_timezone("Europe/Berln")
    assert err.value.suggestion == BERLIN


def test_one_offs_are_whole_seconds() -> None:
    rule = parse_when("2026-04-01T10:00:00.123456", NOW, BERLIN)
    assert next_occurrence(rule, NOW) == datetime(2026, 4, 1, 8, 0, tzinfo=UTC)


def test_rule_json_round_trip() -> None:
    for when in ("every weekday 09:30", "in 3s", "*/5 * * * *"):
        rule = parse_when(when, NOW, BERLIN)
        assert ScheduleRule.from_json(rule.to_json()) == rule


# -- DST -----------------------------------------------------------------------------------
def test_weekday_0930_berlin_across_both_switches() -> None:
    rule = parse_when("every weekday 09:30", NOW, BERLIN)
    spring = first_n(rule, datetime(2026, 3, 26, 12, tzinfo=UTC), 3)  # Fri 27, Mon 30, Tue 31
    assert [local(o, BERLIN).strftime("%a %H:%M") for o in spring] == [
        "Fri 09:30",
        "Mon 09:30",
        "Tue 09:30",
    ]
    assert [o.strftime("%H:%M") for o in spring] == ["08:30", "07:30", "07:30"]  # UTC
    autumn = first_n(rule, datetime(2026, 10, 22, 12, tzinfo=UTC), 3)  # Fri 23, Mon 26, Tue 27
    assert [local(o, BERLIN).strftime("%a %H:%M") for o in autumn] == [
        "Fri 09:30",
        "Mon 09:30",
        "Tue 09:30",
    ]
    assert [o.strftime("%H:%M") for o in autumn] == ["07:30", "08:30", "08:30"]


def test_daily_cron_new_york_across_both_switches() -> None:
    rule = parse_when("0 9 * * *", NOW, NEW_YORK)
    spring = first_n(rule, datetime(2026, 3, 7, 0, tzinfo=UTC), 2)  # Sat 7, Sun 8 (switch)
    assert [local(o, NEW_YORK).strftime("%d %H:%M") for o in spring] == ["07 09:00", "08 09:00"]
    assert [o.strftime("%H") for o in spring] == ["14", "13"]
    autumn = first_n(rule, datetime(2026, 10, 31, 0, tzinfo=UTC), 2)  # Sat 31, Sun 1 (switch)
    assert [local(o, NEW_YORK).strftime("%d %H:%M") for o in autumn] == ["31 09:00", "01 09:00"]
    assert [o.strftime("%H") for o in autumn] == ["13", "14"]


def test_a_skipped_time_happens_at_the_jump() -> None:
    # 02:30 does not exist in Berlin on 29 March 2026: the clock jumps from 02:00 to 03:00.
    for when in ("every day 02:30", "30 2 * * *"):
        rule = parse_when(when, NOW, BERLIN)
        days = first_n(rule, datetime(2026, 3, 27, 12, tzinfo=UTC), 3)
        assert [local(o, BERLIN).strftime("%d %H:%M") for o in days] == [
            "28 02:30",
            "29 03:00",
            "30 02:30",
        ]


def test_a_repeated_time_happens_once() -> None:
    # 02:30 happens twice in Berlin on 25 October 2026; the rule fires at the first one only.
    rule = parse_when("every day 02:30", NOW, BERLIN)
    days = first_n(rule, datetime(2026, 10, 24, 12, tzinfo=UTC), 2)
    assert [local(o, BERLIN).strftime("%d %H:%M %z") for o in days] == [
        "25 02:30 +0200",
        "26 02:30 +0100",
    ]
    second_pass = datetime(2026, 10, 25, 2, 15, tzinfo=ZoneInfo(BERLIN), fold=1)
    assert local(next_occurrence(rule, second_pass), BERLIN).day == 26


def test_half_hourly_cron_across_fall_back_has_no_duplicates() -> None:
    rule = parse_when("*/30 1-3 * * *", NOW, BERLIN)
    occ = first_n(rule, datetime(2026, 10, 24, 22, tzinfo=UTC), 6)
    assert len(set(occ)) == 6 and occ == sorted(occ)
    assert [local(o, BERLIN).strftime("%H:%M") for o in occ] == [
        "01:00",
        "01:30",
        "02:00",
        "02:30",
        "03:00",
        "03:30",
    ]


# -- properties ----------------------------------------------------------------------------
RULE_TEXTS = (
    "every weekday 09:30",
    "every day 02:30",
    "every sunday 03:00",
    "every tue and sat 00:00",
    "30 2 * * *",
    "*/20 1-3 * * 0",
    "0 */6 * * *",
)
ZONES = (BERLIN, NEW_YORK, "Australia/Lord_Howe", "UTC", "Asia/Kolkata")
afters = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2032, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(RULE_TEXTS), st.sampled_from(ZONES), afters, afters)
def test_next_occurrence_is_strictly_after_and_monotonic(
    when: str, tz: str, a: datetime, b: datetime
) -> None:
    rule = parse_when(when, datetime(2024, 1, 1, tzinfo=UTC), tz)
    lo, hi = min(a, b), max(a, b)
    n_lo, n_hi = next_occurrence(rule, lo), next_occurrence(rule, hi)
    assert n_lo is not None and n_hi is not None
    assert n_lo > lo and n_hi > hi
    assert n_lo <= n_hi
    # Nothing in between was missed: the occurrence after lo is the first one after lo.
    assert next_occurrence(rule, n_lo - timedelta(seconds=1)) == n_lo


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(("every day 09:30", "every weekday 09:30", "0 9 * * *")), afters)
def test_wall_clock_is_kept_in_every_zone(when: str, after: datetime) -> None:
    for tz in (BERLIN, NEW_YORK):
        occ = next_occurrence(parse_when(when, datetime(2024, 1, 1, tzinfo=UTC), tz), after)
        assert occ is not None
        hm = local(occ, tz).strftime("%H:%M")
        assert hm == ("09:30" if "09:30" in when else "09:00")


# -- what is due ---------------------------------------------------------------------------
GRACE = timedelta(minutes=10)
CREATED = datetime(2026, 3, 23, 8, 0, tzinfo=UTC)  # Monday


def make_schedule(when: str = "every weekday 09:30", remind_s: int = 0) -> Schedule:
    rule = parse_when(when, CREATED, BERLIN)
    return Schedule(id=1, rule=rule, title="Standup", created=CREATED, remind_s=remind_s)


def at_berlin(day: int, hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(2026, 3, day, hh, mm, ss, tzinfo=ZoneInfo(BERLIN)).astimezone(UTC)


def record(last: dict[str, datetime], actions: list[Action]) -> None:
    for a in actions:
        if a.kind not in last or last[a.kind] < a.occurrence:
            last[a.kind] = a.occurrence


def test_on_time_reminder_then_start_then_nobody_note() -> None:
    s = make_schedule(remind_s=600)
    last: dict[str, datetime] = {}
    assert due_actions(s, last, at_berlin(23, 9, 19), GRACE, online_since=CREATED) == []
    acts = due_actions(s, last, at_berlin(23, 9, 20), GRACE, online_since=CREATED)
    assert acts == [Action(REMINDER, at_berlin(23, 9, 30), at_berlin(23, 9, 20))]
    record(last, acts)
    assert due_actions(s, last, at_berlin(23, 9, 25), GRACE, online_since=CREATED) == []
    assert next_due(s, last) == at_berlin(23, 9, 30)
    acts = due_actions(s, last, at_berlin(23, 9, 30), GRACE, online_since=CREATED)
    assert acts == [Action(START, at_berlin(23, 9, 30), at_berlin(23, 9, 30))]
    record(last, acts)
    assert next_due(s, last) == at_berlin(23, 9, 40)
    acts = due_actions(s, last, at_berlin(23, 9, 40, 1), GRACE, online_since=CREATED)
    assert acts == [Action(NOBODY, at_berlin(23, 9, 30), at_berlin(23, 9, 40))]
    record(last, acts)
    assert next_due(s, last) == at_berlin(24, 9, 20)  # tomorrow's reminder


def test_missed_within_grace_is_late_older_is_skipped() -> None:
    s = make_schedule(remind_s=600)  # reminder 09:20, start 09:30 (Berlin)
    # Offline until 09:27: the reminder is 7 min late, within the grace window.
    online = at_berlin(23, 9, 27)
    acts = due_actions(s, {}, online, GRACE, online_since=online, nobody_note=False)
    assert [(a.kind, a.late, a.skipped) for a in acts] == [(REMINDER, True, False)]
    # Offline until 09:35: the start is 5 min late; the reminder, 15 min late, is skipped.
    online = at_berlin(23, 9, 35)
    acts = due_actions(s, {}, online, GRACE, online_since=online, nobody_note=False)
    assert [(a.kind, a.late, a.skipped) for a in acts] == [
        (REMINDER, True, True),
        (START, True, False),
    ]
    assert "more than the grace window of 10 min" in acts[0].reason
    # Offline until 09:45: both beyond the grace window.
    online = at_berlin(23, 9, 45)
    acts = due_actions(s, {}, online, GRACE, online_since=online, nobody_note=False)
    assert [(a.kind, a.skipped) for a in acts] == [(REMINDER, True), (START, True)]


def test_no_reminder_once_the_call_started() -> None:
    s = make_schedule(remind_s=120)  # reminder 09:28, start 09:30
    online = at_berlin(23, 9, 31)
    acts = due_actions(s, {}, online, GRACE, online_since=online, nobody_note=False)
    assert [(a.kind, a.skipped) for a in acts] == [(REMINDER, True), (START, False)]
    assert "already started" in acts[0].reason


def test_only_the_latest_missed_occurrence_is_posted() -> None:
    s = make_schedule("*/5 * * * *")
    online = at_berlin(24, 9, 33)  # offline since long before: missed 09:25 and 09:30 in grace
    acts = due_actions(s, {START: at_berlin(24, 8, 0)}, online, GRACE, online_since=online)
    starts = [a for a in acts if a.kind == START]
    assert [(a.occurrence, a.skipped) for a in starts] == [
        (at_berlin(24, 9, 25), True),
        (at_berlin(24, 9, 30), False),
    ]
    assert starts[1].late


def test_no_backfill_before_creation() -> None:
    s = make_schedule(remind_s=600)  # created Monday 09:00 Berlin; the first one is 09:30
    assert due_actions(s, {}, CREATED + timedelta(seconds=1), GRACE) == []
    assert next_due(s, {}) == at_berlin(23, 9, 20)
    # Created at 09:25: too late for today's reminder, not for the start.
    late_created = Schedule(1, s.rule, "Standup", at_berlin(23, 9, 25), remind_s=600)
    acts = due_actions(late_created, {}, at_berlin(23, 9, 30), GRACE, nobody_note=False)
    assert [a.kind for a in acts] == [START]


def test_a_one_off_is_over_after_its_actions() -> None:
    s = Schedule(1, parse_when("in 3s", CREATED, BERLIN), "Quick", CREATED)
    last: dict[str, datetime] = {}
    now = CREATED + timedelta(seconds=3)
    acts = due_actions(s, last, now, GRACE, online_since=CREATED, nobody_note=False)
    assert [(a.kind, a.late) for a in acts] == [(START, False)]
    record(last, acts)
    assert next_due(s, last, nobody_note=False) is None
    assert due_actions(s, last, now + timedelta(hours=1), GRACE, nobody_note=False) == []


def test_without_online_since_lateness_is_measured() -> None:
    s = make_schedule()
    acts = due_actions(s, {}, at_berlin(23, 9, 32), GRACE, nobody_note=False)
    assert acts[0].late
    acts = due_actions(s, {}, at_berlin(23, 9, 30, 5), GRACE, nobody_note=False)
    assert not acts[0].late


def test_grace_zero_skips_what_was_missed_offline_but_not_a_slow_tick() -> None:
    s = make_schedule()
    due = at_berlin(23, 9, 30)
    # Up for an hour, the tick came 2 s late: posted, on time.
    acts = due_actions(
        s, {}, due + timedelta(seconds=2), timedelta(0), online_since=CREATED, nobody_note=False
    )
    assert [(a.kind, a.late, a.skipped) for a in acts] == [(START, False, False)]
    # Offline at 09:30, back 09:30:05: nothing missed offline is posted with a grace of 0.
    back = due + timedelta(seconds=5)
    acts = due_actions(s, {}, back, timedelta(0), online_since=back, nobody_note=False)
    assert [(a.kind, a.skipped) for a in acts] == [(START, True)]


ticks = st.lists(
    st.integers(min_value=0, max_value=3 * 86_400), min_size=1, max_size=60, unique=True
).map(sorted)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(("every weekday 09:30", "*/20 8-10 * * *", "in 2h")),
    st.integers(min_value=0, max_value=1800),
    ticks,
    st.sets(st.integers(min_value=0, max_value=59), max_size=10),
)
def test_never_twice_and_never_beyond_grace(
    when: str, remind_s: int, tick_offsets: list[int], restarts: set[int]
) -> None:
    """Ticks at random times, restarts in between: each (kind, occurrence) is posted at most
    once, and never later than the grace window."""
    s = Schedule(1, parse_when(when, CREATED, BERLIN), "T", CREATED, remind_s=remind_s)
    last: dict[str, datetime] = {}
    posted: list[tuple[str, datetime]] = []
    online = CREATED
    for i, offset in enumerate(tick_offsets):
        now = CREATED + timedelta(seconds=offset)
        if i in restarts:
            online = now
        acts = due_actions(s, last, now, GRACE, online_since=online)
        for a in acts:
            assert a.due <= now
            if not a.skipped:
                assert now - a.due <= GRACE
                assert a.occurrence > s.created
                posted.append((a.kind, a.occurrence))
        record(last, acts)
        # The same moment again (a duplicate tick, or a restart right now): nothing new.
        assert [a for a in due_actions(s, last, now, GRACE) if not a.skipped] == []
    assert len(posted) == len(set(posted))


# -- config --------------------------------------------------------------------------------
def test_schedule_settings() -> None:
    cfg = parse_settings({"schedules.default_timezone": "europe/berlin"}).schedules
    assert cfg.default_timezone == BERLIN and cfg.grace_minutes == 10
    assert cfg.mention_room and cfg.nobody_joined_note
    with pytest.raises(ConfigError, match=r"schedules\.default_timezone .*Europe/Berlin\?"):
        parse_settings({"schedules.default_timezone": "Europe/Berln"})
    with pytest.raises(ConfigError, match=r"schedules\.grace_minutes"):
        parse_settings({"schedules.grace_minutes": -1})
