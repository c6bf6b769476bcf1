"""The calls feature's config sections: invites, notices about calls, calls, the call card."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import choice, flag, number, setting, text_list

NOTIFY_LEVELS = ("off", "summary", "all")


@dataclass(frozen=True)
class InviteSettings:
    allowed_users: tuple[str, ...] = setting((), text_list(), "users whose invites are accepted")
    allowed_servers: tuple[str, ...] = setting(
        (), text_list(), "servers whose users' invites are accepted"
    )
    from_anyone: bool = setting(
        False, flag(), "accept every invite (both lists empty: the bot's own homeserver only)"
    )


@dataclass(frozen=True)
class NoticeSettings:
    default_level: str = setting(
        "all", choice(*NOTIFY_LEVELS), "what a room is told of its calls unless it chose"
    )
    batch_seconds: float = setting(
        2.0, number(0.0, 300.0), "joins and leaves within this window are one line"
    )


@dataclass(frozen=True)
class CallSettings:
    # False: join, record and announce need a call with people in it (the bot never starts
    # a call alone; clients would show a call with only the bot in it).
    bot_may_start: bool = setting(False, flag(), "the bot may be in a call without people")


@dataclass(frozen=True)
class CallCardSettings:
    enabled: bool = setting(True, flag(), "the card at the end of a call")
    image: bool = setting(True, flag(), "with the picture of who spoke when")
