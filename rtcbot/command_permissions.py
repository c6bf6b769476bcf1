"""Who may use which command: a power level per command, checked before anything happens.

The defaults: commands that only read (help, who, status, diag, record status, the schedule
list) are for everyone; commands that change what the bot does in the room or in the call
(join, leave, announce, notify, auto, record, schedule add/remove/tz) need a moderator (50).
`permissions.<key>` in the config overrides a level.
"""

from __future__ import annotations

from collections.abc import Mapping

MODERATOR = 50
DEFAULT_LEVELS: Mapping[str, int] = {
    "help": 0,
    "version": 0,
    "who": 0,
    "status": 0,
    "diag": 0,
    "record_status": 0,
    # Anyone may leave their own voice out of recordings (and take it back).
    "record_optout": 0,
    "schedule_list": 0,
    "schedule_next": 0,
    "join": MODERATOR,
    "leave": MODERATOR,
    "notify": MODERATOR,
    "announce": MODERATOR,
    "auto": MODERATOR,
    "record": MODERATOR,
    "transcript": MODERATOR,
    "captions": MODERATOR,
    "schedule_add": MODERATOR,
    "schedule_remove": MODERATOR,
    "schedule_tz": MODERATOR,
}
# Asking for the current value (`!call notify`, `!call auto`, `!call schedule tz`) only reads.
_SHOWS_WITHOUT_ARGS = ("notify", "auto", "schedule_tz", "transcript", "captions")


def permission_key(name: str, args: tuple[str, ...]) -> str:
    """The config key that governs `!call <name> <args…>`."""
    first = args[0].lower() if args else ""
    if name == "record":
        if first in ("optout", "optin"):
            return "record_optout"
        return "record_status" if first in ("", "status") else "record"
    if name == "schedule":
        key = f"schedule_{first or 'list'}"
        if key not in DEFAULT_LEVELS:
            return "schedule_list"  # unknown: the answer is the usage
        if key in _SHOWS_WITHOUT_ARGS and len(args) < 2:
            return "schedule_list"
        return key
    if name in _SHOWS_WITHOUT_ARGS and not first:
        return "help"
    return name if name in DEFAULT_LEVELS else "help"


def describe(key: str) -> str:
    """`record` → "record", `schedule_add` → "schedule add": the command as people type it."""
    return key.replace("_", " ")
