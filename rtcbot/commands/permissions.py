"""Who may use which command: every command's actions, how people spell them, and the power
level key of each, in this one table (`COMMANDS`).

The router looks the words up here once, checks the key of the action found, and hands the
action's name to the command's handler, which acts on that name only: a spelling this table
does not know never reaches an action, and an unknown sub-word gets the command's strictest
key, never the weakest. `permissions.<key>` in the config overrides a level.

The defaults: what only reads (help, who, status, record status, the schedule list) is for
everyone, and so is leaving one's own voice out of recordings; what changes what the bot does
in the room or in the call needs a moderator (50), and so does `diag`, which spends the bot's
own rate limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MODERATOR = 50
DEFAULT_LEVELS: Mapping[str, int] = {
    "help": 0,
    "version": 0,
    "who": 0,
    "status": 0,
    # Each run spends the bot's delayed-event budget, which its heartbeats need (review M4).
    "diag": MODERATOR,
    "record_status": 0,
    # Any member may search the room's own transcripts (they could read them anyway).
    "search": 0,
    # Any member may ask (only where recaps are on: the room's moderators chose the model).
    "ask": 0,
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
    # Redacts a recording's messages and removes its files: for good, for everyone.
    "record_delete": MODERATOR,
    "transcript": MODERATOR,
    "captions": MODERATOR,
    # Recaps send the room's transcripts to the configured model: the room's moderators decide.
    "recap": MODERATOR,
    "schedule_add": MODERATOR,
    "schedule_remove": MODERATOR,
    "schedule_tz": MODERATOR,
    # The room's MSC4143 call slot: whether Element X's coming stack may join at all.
    "slot": MODERATOR,
}


@dataclass(frozen=True)
class Action:
    name: str  # what the handler acts on: "remove"
    key: str  # its permission key: "schedule_remove"
    spellings: tuple[str, ...] = ()  # the words after the command: "remove", "rm", "opt out"
    key_alone: str | None = None  # the key when nothing follows (showing only reads)


@dataclass(frozen=True)
class Command:
    name: str
    actions: tuple[Action, ...]
    bare: str  # the action of the command alone ("!call record" → "status")
    free: bool = False  # one action; the words after the command are its arguments

    def action(self, name: str) -> Action:
        return next(a for a in self.actions if a.name == name)

    def keys(self) -> tuple[str, ...]:
        """Every key of the command, in the order declared (the first strictest wins ties)."""
        keys = [k for a in self.actions for k in (a.key, a.key_alone) if k is not None]
        return tuple(dict.fromkeys(keys))


@dataclass(frozen=True)
class Resolved:
    action: str  # "" for an unknown sub-word: the handler answers with its usage
    key: str
    args: tuple[str, ...]  # the words after the action's spelling


def _free(name: str) -> Command:
    """A command with one action whose words are its arguments (`!call announce <text>`)."""
    return Command(name, (Action(name, name),), bare=name, free=True)


def _choices(name: str, key: str, words: tuple[str, ...], alone: str = "help") -> Command:
    """`!call notify off|summary|all`: one action per word; alone, the command only shows."""
    actions = tuple(Action(w, key, (w,)) for w in words)
    return Command(name, (Action("show", alone), *actions), bare="show")


OPT_OUT = ("optout", "opt-out", "opt out")
OPT_IN = ("optin", "opt-in", "opt in")
ANONYMOUS = ("anonymous", "anon", "quietly")

COMMANDS: Mapping[str, Command] = {
    c.name: c
    for c in (
        _free("help"),
        _free("version"),
        _free("who"),
        _free("status"),
        _free("diag"),
        _free("join"),
        _free("leave"),
        _free("announce"),
        _free("search"),
        _free("ask"),
        _choices("notify", "notify", ("off", "summary", "all")),
        _choices("auto", "auto", ("record", "announce", "off")),
        _choices("transcript", "transcript", ("on", "off")),
        _choices("captions", "captions", ("on", "off")),
        _choices("recap", "recap", ("on", "off", "now")),
        _choices("slot", "slot", ("open", "close"), alone="status"),
        Command(
            "record",
            (
                Action("status", "record_status", ("status",)),
                Action("start", "record", ("start",)),
                Action("stop", "record", ("stop",)),
                Action("optout", "record_optout", OPT_OUT),
                Action(
                    "optout_anonymous",
                    "record_optout",
                    tuple(f"{o} {a}" for o in OPT_OUT for a in ANONYMOUS),
                ),
                Action("optin", "record_optout", OPT_IN),
                Action("delete", "record_delete", ("delete",)),
            ),
            bare="status",
        ),
        Command(
            "schedule",
            (
                Action("list", "schedule_list", ("list", "ls")),
                Action("usage", "schedule_list", ("help",)),
                Action("next", "schedule_next", ("next",)),
                Action("add", "schedule_add", ("add",)),
                Action("remove", "schedule_remove", ("remove", "rm", "delete")),
                Action("tz", "schedule_tz", ("tz", "timezone"), key_alone="schedule_list"),
            ),
            bare="usage",
        ),
    )
}


def resolve(name: str, args: tuple[str, ...], levels: Mapping[str, int]) -> Resolved | None:
    """The action `!call <name> <args…>` asks for and its key; None for an unknown command.
    `levels`: the configured levels, to find the strictest key for an unknown sub-word."""
    command = COMMANDS.get(name)
    if command is None:
        return None
    if command.free or not args:
        action = command.action(command.bare)
        return Resolved(action.name, action.key, args)
    words = tuple(a.lower() for a in args)
    found: tuple[Action, int] | None = None
    for action in command.actions:
        for spelling in action.spellings:
            n = len(spelling.split())
            if words[:n] == tuple(spelling.split()) and (found is None or n > found[1]):
                found = (action, n)
    if found is None:
        strictest = max(command.keys(), key=lambda k: levels.get(k, MODERATOR))
        return Resolved("", strictest, args)
    action, n = found
    rest = args[n:]
    key = action.key_alone if action.key_alone is not None and not rest else action.key
    return Resolved(action.name, key, rest)


def permission_key(
    name: str, args: tuple[str, ...], levels: Mapping[str, int] = DEFAULT_LEVELS
) -> str:
    """The config key that governs `!call <name> <args…>` (an unknown command: `help`, it
    only answers with the list)."""
    found = resolve(name, args, levels)
    return found.key if found is not None else "help"


def describe(key: str) -> str:
    """`record` → "record", `schedule_add` → "schedule add": the command as people type it."""
    return key.replace("_", " ")
