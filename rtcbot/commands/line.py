"""Splitting a `!call …` message into a subcommand and its arguments (pure)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass


@dataclass(frozen=True)
class CommandLine:
    name: str  # the subcommand, lowercased; "" for a bare "!call"
    args: tuple[str, ...]
    rest: str  # the raw text after the subcommand (for free text such as announcements)


def parse_command_line(body: str, command: str) -> CommandLine | None:
    """Return the parsed command, or None when the message is not addressed to the bot."""
    text = body.strip()
    prefix = f"!{command}"
    if not text.lower().startswith(prefix):
        return None
    tail = text[len(prefix) :]
    if tail and not tail[0].isspace():
        return None  # "!caller" is somebody else's command
    tail = tail.strip()
    if not tail:
        return CommandLine("", (), "")
    name, _, rest = tail.partition(" ")
    rest = rest.strip()
    try:
        args = tuple(shlex.split(rest))
    except ValueError:  # unbalanced quotes: fall back to plain words
        args = tuple(rest.split())
    return CommandLine(name.lower(), args, rest)
