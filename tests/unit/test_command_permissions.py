"""Which permission key governs a command line, and how the config sets the levels."""

from __future__ import annotations

import pytest

from rtcbot.command_permissions import DEFAULT_LEVELS, permission_key
from rtcbot.config import ConfigError, parse_settings


@pytest.mark.parametrize(
    ("name", "args", "key"),
    [
        ("join", (), "join"),
        ("record", (), "record_status"),
        ("record", ("status",), "record_status"),
        ("record", ("START",), "record"),
        ("record", ("stop",), "record"),
        ("notify", (), "help"),
        ("notify", ("off",), "notify"),
        ("auto", (), "help"),
        ("auto", ("record",), "auto"),
        ("schedule", (), "schedule_list"),
        ("schedule", ("add", "tomorrow", "9:00", "x"), "schedule_add"),
        ("schedule", ("remove", "1"), "schedule_remove"),
        ("schedule", ("tz",), "schedule_list"),
        ("schedule", ("tz", "Europe/Berlin"), "schedule_tz"),
        ("schedule", ("bogus",), "schedule_list"),
        ("nonsense", (), "help"),
    ],
)
def test_permission_key(name: str, args: tuple[str, ...], key: str) -> None:
    assert permission_key(name, args) == key


def test_defaults_read_for_everyone_change_for_moderators() -> None:
    levels = parse_settings({}).permissions
    assert levels == dict(DEFAULT_LEVELS)
    assert all(levels[k] == 0 for k in ("help", "who", "status", "record_status"))
    assert all(levels[k] == 50 for k in ("join", "leave", "announce", "notify", "auto", "record"))


def test_config_overrides_and_refuses_unknown_commands() -> None:
    assert parse_settings({"permissions": {"announce": 100}}).permissions["announce"] == 100
    with pytest.raises(ConfigError, match=r"permissions\.anounce is not a command"):
        parse_settings({"permissions": {"anounce": 0}})
    with pytest.raises(ConfigError, match=r"permissions\.join must be a whole number"):
        parse_settings({"permissions": {"join": "mods"}})


def test_opt_out_is_for_everyone_and_transcript_captions_for_moderators() -> None:
    assert permission_key("record", ("optout",)) == "record_optout"
    assert permission_key("record", ("optin",)) == "record_optout"
    assert DEFAULT_LEVELS["record_optout"] == 0
    assert permission_key("record", ("start",)) == "record"
    for name in ("transcript", "captions"):
        assert permission_key(name, ()) == "help"  # showing the state only reads
        assert permission_key(name, ("on",)) == name
        assert DEFAULT_LEVELS[name] == 50
