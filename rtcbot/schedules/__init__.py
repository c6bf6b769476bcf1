"""Scheduled calls: `!call schedule …` with reminders, a start notice, a ring, recording.

The rules are pure and re-exported here:
* `parse`: what people type (`<when>`, durations, time zones, the options of `add`);
* `occurrences`: the rule and schedule model, occurrences across DST;
* `format`: durations, clocks and rules in words;
* `plan`: which actions (reminder, start, nobody-joined note) are due.

The Matrix side lives in `runner.py` (`ScheduleRunner`, posts what is due) and `commands/router.py`
(`ScheduleCommands`); import them from there. They are not re-exported: they need the
BotContext, and the settings assembly (rtcbot/settings.py) imports this package's section. The SQL is
`rtcbot.db.ScheduleStore`.
"""

from __future__ import annotations

from .format import describe, format_clock, format_day, format_delta, format_local
from .occurrences import (
    KIND_CRON,
    KIND_ONCE,
    KIND_RRULE,
    NOBODY_CHECK_DEFAULT_S,
    RULE_KINDS,
    Schedule,
    ScheduleRule,
    next_occurrence,
    occurrences,
)
from .parse import (
    EXAMPLES,
    MAX_DURATION_S,
    MAX_REMIND_S,
    ParsedAdd,
    RuleError,
    ScheduleOptions,
    UnknownTimezone,
    parse_add,
    parse_duration,
    parse_when,
    resolve_timezone,
)
from .plan import (
    ACTION_KINDS,
    LATE_AFTER,
    NOBODY,
    REMINDER,
    START,
    Action,
    action_kinds,
    action_offset,
    due_actions,
    next_due,
)

__all__ = [
    "ACTION_KINDS",
    "EXAMPLES",
    "KIND_CRON",
    "KIND_ONCE",
    "KIND_RRULE",
    "LATE_AFTER",
    "MAX_DURATION_S",
    "MAX_REMIND_S",
    "NOBODY",
    "NOBODY_CHECK_DEFAULT_S",
    "REMINDER",
    "RULE_KINDS",
    "START",
    "Action",
    "ParsedAdd",
    "RuleError",
    "Schedule",
    "ScheduleOptions",
    "ScheduleRule",
    "UnknownTimezone",
    "action_kinds",
    "action_offset",
    "describe",
    "due_actions",
    "format_clock",
    "format_day",
    "format_delta",
    "format_local",
    "next_due",
    "next_occurrence",
    "occurrences",
    "parse_add",
    "parse_duration",
    "parse_when",
    "resolve_timezone",
]
