"""The `!call` command tree: parse, gate exactly once, delegate, format the reply.

Commands are dispatched from raw (room, sender, event id, text) so that the catch-up of
commands maubot dropped after a restart runs the very same code (`run_command`).
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from maubot.handlers import event
from mautrix.types import EventID, EventType, MessageType, RoomID, UserID

from ..context import BotContext
from ..matrix.encryption_guard import PlaintextRefused
from ..matrix.notices import Notices, md_escape
from ..matrix.permissions import user_level
from ..version import __version__
from .line import CommandLine, parse_command_line
from .permissions import COMMANDS, MODERATOR, describe, resolve

Handler = Callable[["CommandContext"], Awaitable[None]]


@dataclass
class CommandContext:
    """One command being answered: who asked where, the parsed line, and how to reply."""

    notices: Notices
    prefix: str  # "!call", for usage lines
    room_id: RoomID
    sender: UserID
    event_id: EventID
    line: CommandLine
    # What the router found in the words (command_permissions.COMMANDS), the only thing a
    # handler acts on: the action's name ("" for an unknown sub-word: answer with the usage)
    # and the words after its spelling.
    action: str = ""
    action_args: tuple[str, ...] = ()

    async def reply(self, markdown: str, html_body: str | None = None) -> EventID:
        return await self.notices.reply(self.room_id, self.event_id, markdown, html_body)


@dataclass(frozen=True)
class Subcommand:
    name: str
    usage: str
    help: str
    handler: Handler


class CommandRouter:
    """Holds the subcommands (features register theirs at wiring time) and receives messages."""

    def __init__(self, ctx: BotContext) -> None:
        self.ctx = ctx
        self.log = ctx.logger("commands")
        self._subcommands: dict[str, Subcommand] = {}
        self.add("help", "", "show this list", self._help)
        self.add("version", "", "show the rtcbot version", self._version)

    def add(self, name: str, usage: str, help_text: str, handler: Handler) -> None:
        if name not in COMMANDS:  # no command without its actions and their permission keys
            raise ValueError(f"!{name} is not in command_permissions.COMMANDS")
        self._subcommands[name] = Subcommand(name, usage, help_text, handler)

    @property
    def prefix(self) -> str:
        return f"!{self.ctx.settings().command}"

    @event.on(EventType.ROOM_MESSAGE)
    async def on_message(self, evt: Any) -> None:
        if evt.sender == self.ctx.client.mxid or evt.content.msgtype != MessageType.TEXT:
            return
        await self.run_command(evt.room_id, evt.sender, evt.event_id, evt.content.body or "")

    async def run_command(
        self, room_id: RoomID, sender: UserID, event_id: EventID, text: str
    ) -> None:
        """Run a command exactly once, whether it came live or from the catch-up."""
        if parse_command_line(text, self.ctx.settings().command) is None:
            return
        if not await self.ctx.db.claim_command(str(event_id), str(room_id)):
            return
        await self.dispatch(room_id, sender, event_id, text)

    async def dispatch(
        self, room_id: RoomID, sender: UserID, event_id: EventID, body: str
    ) -> bool:
        """Run the command in `body`; return False when the text is not a command for us."""
        try:
            return await self._dispatch(room_id, sender, event_id, body)
        except PlaintextRefused:
            return True  # an encrypted room and no crypto: the guard logged why, once per room

    async def _dispatch(
        self, room_id: RoomID, sender: UserID, event_id: EventID, body: str
    ) -> bool:
        line = parse_command_line(body, self.ctx.settings().command)
        if line is None:
            return False
        cmd = CommandContext(self.ctx.notices, self.prefix, room_id, sender, event_id, line)
        sub = self._subcommands.get(line.name or "help")
        self.ctx.metrics.commands.labels(sub.name if sub else "unknown").inc()
        found = resolve(sub.name, line.args, self.ctx.settings().permissions) if sub else None
        if sub is None or found is None:
            await cmd.reply(
                f"Unknown command {md_escape(line.name or '', 40)}. "
                f"Type `{self.prefix} help` for the list."
            )
            return True
        cmd.action, cmd.action_args = found.action, found.args
        if not await self._permitted(cmd, found.key):
            return True
        try:
            await sub.handler(cmd)
        except PlaintextRefused:
            raise
        except Exception:
            # maubot would swallow the exception silently; tell the room something went wrong.
            self.log.exception("command %r in %s failed", line.name, room_id)
            await cmd.reply(
                f"Sorry, `{self.prefix} {line.name}` failed unexpectedly. "
                "The details are in the bot's log."
            )
        return True

    async def _permitted(self, cmd: CommandContext, key: str) -> bool:
        """Check the sender's power level before anything happens; tell them if it is too low."""
        need = self.ctx.settings().permissions.get(key, MODERATOR)
        if need <= 0:
            return True
        try:
            level = await user_level(self.ctx.client, cmd.room_id, cmd.sender)
        except Exception as e:
            self.log.warning("could not read the power levels of %s: %s", cmd.room_id, e)
            await cmd.reply(
                "Sorry, I could not read this room's power levels, so I can't check who may "
                f"use `{self.prefix} {describe(key)}`. Try again in a moment."
            )
            return False
        if level >= need:
            return True
        await cmd.reply(
            f"Sorry, only members with power level {need} or more may use "
            f"`{self.prefix} {describe(key)}` here (you have {level}). A room admin can raise "
            f"your level; the bot's admin sets this as `permissions.{key}`."
        )
        return False

    # -- built-in commands -------------------------------------------------------------------
    async def _help(self, cmd: CommandContext) -> None:
        rows_md = []
        rows_html = []
        for sub in self._subcommands.values():
            usage = f"{self.prefix} {sub.name}" + (f" {sub.usage}" if sub.usage else "")
            rows_md.append(f"* `{usage}` — {sub.help}")
            rows_html.append(
                f"<li><code>{html.escape(usage)}</code> — {html.escape(sub.help)}</li>"
            )
        title = "rtcbot commands"
        await cmd.reply(
            f"**{title}**\n\n" + "\n".join(rows_md),
            f"<p><strong>{title}</strong></p><ul>{''.join(rows_html)}</ul>",
        )

    async def _version(self, cmd: CommandContext) -> None:
        await cmd.reply(f"rtcbot {__version__}")
