"""The one table of commands (`COMMANDS`): every spelling finds its action and key, an unknown
sub-word gets the strictest key, and the config sets the levels."""

from __future__ import annotations

import pytest

from rtcbot.calls.settings import NOTIFY_LEVELS
from rtcbot.commands.permissions import (
    COMMANDS,
    DEFAULT_LEVELS,
    MODERATOR,
    Resolved,
    permission_key,
    resolve,
)
from rtcbot.config import ConfigError
from rtcbot.recording.sessions import ROLES
from rtcbot.settings import parse_settings


@pytest.mark.parametrize(
    ("name", "args", "key"),
    [
        ("join", (), "join"),
        ("diag", ("--verbose",), "diag"),
        ("record", (), "record_status"),
        ("record", ("status",), "record_status"),
        ("record", ("START",), "record"),
        ("record", ("stop",), "record"),
        ("notify", (), "help"),
        ("notify", ("off",), "notify"),
        ("auto", (), "help"),
        ("auto", ("record",), "auto"),
        ("schedule", (), "schedule_list"),
        ("schedule", ("ls",), "schedule_list"),
        ("schedule", ("add", "tomorrow", "9:00", "x"), "schedule_add"),
        ("schedule", ("remove", "1"), "schedule_remove"),
        ("schedule", ("rm", "1"), "schedule_remove"),
        ("schedule", ("delete", "1"), "schedule_remove"),
        ("schedule", ("tz",), "schedule_list"),
        ("schedule", ("timezone",), "schedule_list"),
        ("schedule", ("tz", "Europe/Berlin"), "schedule_tz"),
        ("schedule", ("timezone", "Europe/Berlin"), "schedule_tz"),
        ("nonsense", (), "help"),
    ],
)
def test_permission_key(name: str, args: tuple[str, ...], key: str) -> None:
    assert permission_key(name, args) == key


def test_every_spelling_finds_its_own_action_and_key() -> None:
    for command in COMMANDS.values():
        for action in command.actions:
            for spelling in action.spellings:
                words = (*spelling.upper().split(), "rest")
                found = resolve(command.name, words, DEFAULT_LEVELS)
                assert found == Resolved(action.name, action.key, ("rest",)), (command, spelling)
        bare = resolve(command.name, (), DEFAULT_LEVELS)
        assert bare is not None and bare.action == command.bare


def test_every_key_is_a_config_key_and_every_config_key_is_used() -> None:
    used = {k for command in COMMANDS.values() for k in command.keys()}
    assert used == set(DEFAULT_LEVELS)


def test_the_choices_are_what_the_handlers_accept() -> None:
    assert [a.name for a in COMMANDS["notify"].actions] == ["show", *NOTIFY_LEVELS]
    assert [a.name for a in COMMANDS["auto"].actions] == ["show", *ROLES, "off"]


def test_an_unknown_sub_word_gets_the_strictest_key() -> None:
    assert resolve("schedule", ("bogus", "1"), DEFAULT_LEVELS) == Resolved(
        "", "schedule_add", ("bogus", "1")
    )
    assert permission_key("record", ("opt",)) == "record"
    assert permission_key("notify", ("loud",)) == "notify"
    assert permission_key("transcript", ("maybe",)) == "transcript"
    # Strictest by the configured levels, not by the defaults.
    levels = {**DEFAULT_LEVELS, "schedule_tz": 100}
    assert permission_key("schedule", ("zone",), levels) == "schedule_tz"
    levels = {**DEFAULT_LEVELS, "record_optout": 75}
    assert permission_key("record", ("bogus",), levels) == "record_optout"


def test_the_longest_spelling_wins_and_the_rest_are_arguments() -> None:
    found = resolve("record", ("opt", "out", "Anonymous"), DEFAULT_LEVELS)
    assert found == Resolved("optout_anonymous", "record_optout", ())
    found = resolve("record", ("opt-out", "loudly"), DEFAULT_LEVELS)
    assert found == Resolved("optout", "record_optout", ("loudly",))
    found = resolve("announce", ("Hello", "there"), DEFAULT_LEVELS)
    assert found == Resolved("announce", "announce", ("Hello", "there"))


def test_defaults_read_for_everyone_change_for_moderators() -> None:
    levels = parse_settings({}).permissions
    assert levels == dict(DEFAULT_LEVELS)
    assert all(levels[k] == 0 for k in ("help", "who", "status", "record_status"))
    assert all(levels[k] == 50 for k in ("join", "leave", "announce", "notify", "auto", "record"))
    assert levels["diag"] == MODERATOR  # it spends the bot's own rate limits


def test_config_overrides_and_refuses_unknown_commands() -> None:
    assert parse_settings({"permissions": {"announce": 100}}).permissions["announce"] == 100
    with pytest.raises(ConfigError, match=r"permissions\.anounce is not a command"):
        parse_settings({"permissions": {"anounce": 0}})
    with pytest.raises(ConfigError, match=r"permissions\.join must be a whole number"):
        parse_settings({"permissions": {"join": "mods"}})


def test_opt_out_in_every_spelling_is_for_everyone() -> None:
    for spelling in ("optout", "opt-out", "opt out", "optin", "opt-in", "opt in"):
        assert permission_key("record", tuple(spelling.split())) == "record_optout", spelling
        assert permission_key("record", (*spelling.split(), "anonymous")) == "record_optout"
    assert DEFAULT_LEVELS["record_optout"] == 0
    for name in ("transcript", "captions"):
        assert permission_key(name, ()) == "help"  # showing the state only reads
        assert permission_key(name, ("on",)) == name
        assert DEFAULT_LEVELS[name] == 50


def test_the_router_refuses_a_command_missing_from_the_table() -> None:
    import logging
    from types import SimpleNamespace

    from rtcbot.commands.router import CommandRouter

    ctx = SimpleNamespace(logger=logging.getLogger)
    router = CommandRouter(ctx)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"not in command_permissions\.COMMANDS"):
        router.add("purge", "", "an action nobody declared", router._help)
