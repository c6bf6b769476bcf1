"""The `!call` command tree: parse, check permission, delegate, format the reply.

Commands are dispatched from raw (room, sender, event id, text) so that the catch-up of
commands maubot dropped after a restart runs the very same code.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mautrix.types import EventID, RoomID, UserID

from .command_line import CommandLine, parse_command_line
from .version import __version__

if TYPE_CHECKING:
    from .bot import RtcBot

Handler = Callable[["CommandContext"], Awaitable[None]]


@dataclass
class CommandContext:
    bot: RtcBot
    room_id: RoomID
    sender: UserID
    event_id: EventID
    line: CommandLine

    async def reply(self, markdown: str, html_body: str | None = None) -> EventID:
        return await self.bot.notices.reply(self.room_id, self.event_id, markdown, html_body)


@dataclass(frozen=True)
class Subcommand:
    name: str
    usage: str
    help: str
    handler: Handler


class CommandRouter:
    """Holds the subcommands; features register theirs at wiring time."""

    def __init__(self, bot: RtcBot) -> None:
        self.bot = bot
        self.log = logging.getLogger("rtcbot.commands")
        self._subcommands: dict[str, Subcommand] = {}
        self.add("help", "", "show this list", self._help)
        self.add("version", "", "show the rtcbot version", self._version)

    def add(self, name: str, usage: str, help_text: str, handler: Handler) -> None:
        self._subcommands[name] = Subcommand(name, usage, help_text, handler)

    @property
    def prefix(self) -> str:
        return f"!{self.bot.settings.command}"

    async def dispatch(
        self, room_id: RoomID, sender: UserID, event_id: EventID, body: str
    ) -> bool:
        """Run the command in `body`; return False when the text is not a command for us."""
        line = parse_command_line(body, self.bot.settings.command)
        if line is None:
            return False
        ctx = CommandContext(self.bot, room_id, sender, event_id, line)
        sub = self._subcommands.get(line.name or "help")
        if sub is None:
            await ctx.reply(
                f"Unknown command `{line.name}`. Type `{self.prefix} help` for the list."
            )
            return True
        try:
            await sub.handler(ctx)
        except Exception:
            # maubot would swallow the exception silently; tell the room something went wrong.
            self.log.exception("command %r in %s failed", line.name, room_id)
            await ctx.reply(
                f"Sorry, `{self.prefix} {line.name}` failed unexpectedly. "
                "The details are in the bot's log."
            )
        return True

    # -- built-in commands -------------------------------------------------------------------
    async def _help(self, ctx: CommandContext) -> None:
        rows_md = []
        rows_html = []
        for sub in self._subcommands.values():
            usage = f"{self.prefix} {sub.name}" + (f" {sub.usage}" if sub.usage else "")
            rows_md.append(f"* `{usage}` — {sub.help}")
            rows_html.append(
                f"<li><code>{html.escape(usage)}</code> — {html.escape(sub.help)}</li>"
            )
        title = "rtcbot commands"
        await ctx.reply(
            f"**{title}**\n\n" + "\n".join(rows_md),
            f"<p><strong>{title}</strong></p><ul>{''.join(rows_html)}</ul>",
        )

    async def _version(self, ctx: CommandContext) -> None:
        await ctx.reply(f"rtcbot {__version__}")
