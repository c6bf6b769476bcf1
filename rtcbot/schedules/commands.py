"""`!call schedule add|list|next|remove|tz`: the commands of scheduled calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from ..commands.router import CommandContext, CommandRouter
from ..context import BotContext
from ..matrix.permissions import user_level
from .format import describe, format_delta, format_local
from .occurrences import Schedule, next_occurrence
from .parse import EXAMPLES, RuleError, parse_add, resolve_timezone
from .render import braces, render
from .runner import ScheduleRunner
from .store import ScheduleStore

MAX_PER_ROOM = 50


def _extras(schedule: Schedule) -> str:
    """ "reminder 10 min before, rings the room, I record it, 30 min long"."""
    parts = []
    if schedule.remind_s:
        parts.append(f"reminder {format_delta(schedule.remind_s)} before")
    if schedule.ring:
        parts.append("rings the room")
    if schedule.record:
        parts.append("I record it")
    if schedule.duration_s:
        parts.append(f"{format_delta(schedule.duration_s)} long")
    return ", ".join(parts)


class ScheduleCommands:
    """Stores schedules on `add` and `remove` and wakes the runner to re-plan."""

    def __init__(self, ctx: BotContext, runner: ScheduleRunner) -> None:
        self.ctx = ctx
        self.runner = runner
        self.store = ScheduleStore(ctx.db.db)

    def register(self, router: CommandRouter) -> None:
        router.add(
            "schedule",
            "add|list|next|remove|tz …",
            "calls on a timetable: reminders, a start notice, ringing, recording",
            self.command,
        )

    async def command(self, cmd: CommandContext) -> None:
        # The router found the action in command_permissions.COMMANDS (and checked its level):
        # "" is an unknown word, "usage" is `schedule help`.
        handlers: dict[str, Callable[[CommandContext], Awaitable[None]]] = {
            "add": self._add,
            "list": self._list,
            "next": self._next,
            "remove": self._remove,
            "tz": self._tz,
        }
        handler = handlers.get(cmd.action)
        if handler is None:
            await cmd.reply(self._usage(cmd))
            return
        await handler(cmd)

    @staticmethod
    def _usage(cmd: CommandContext) -> str:
        p = f"{cmd.prefix} schedule"
        return (
            "**Scheduled calls**\n\n"
            f"* `{p} add <when> <title> [--remind 10m] [--ring] [--record] [--duration 30m] "
            "[--tz Europe/Berlin]`\n"
            f"* `{p} list` — the schedules of this room\n"
            f"* `{p} next` — the next scheduled call here\n"
            f"* `{p} remove <id>`\n"
            f"* `{p} tz [Europe/Berlin]` — the time zone of new schedules here\n\n"
            f"`<when>` can be {EXAMPLES}."
        )

    async def room_timezone(self, room_id: str) -> tuple[str, bool]:
        """The room's time zone, and whether it is the room's own choice (not the default)."""
        tz = await self.store.get_timezone(room_id)
        if tz:
            return tz, True
        return self.ctx.settings().schedules.default_timezone, False

    async def _add(self, cmd: CommandContext) -> None:
        now = datetime.now(UTC)
        tz, _ = await self.room_timezone(cmd.room_id)
        try:
            parsed = parse_add(cmd.action_args, now, tz)
        except RuleError as e:
            await cmd.reply(f"{e}\n\nUsage: `{cmd.prefix} schedule add <when> <title>`")
            return
        if parsed.options.record and not await self._may_record(cmd):
            return
        if len(await self.store.for_room(cmd.room_id)) >= MAX_PER_ROOM:
            await cmd.reply(
                f"This room has {MAX_PER_ROOM} schedules already; remove one first "
                f"(`{cmd.prefix} schedule list` shows them)."
            )
            return
        opts = parsed.options
        schedule = await self.store.add(
            cmd.room_id,
            cmd.sender,
            parsed.rule,
            parsed.title,
            opts.remind_s,
            opts.ring,
            opts.record,
            opts.duration_s,
            now,
        )
        self.runner.wake()
        nxt = next_occurrence(schedule.rule, now)
        lines = ["Scheduled **#{id} {title}**: " + braces(describe(schedule.rule)) + "."]
        if nxt is not None:
            line = f"Next: {format_local(nxt, schedule.rule.tz, now)}, in {format_delta((nxt - now).total_seconds())}."
            if schedule.remind_s and nxt - timedelta(seconds=schedule.remind_s) <= now:
                line += " That one is too close for its reminder."
            lines.append(braces(line))
        extras = _extras(schedule)
        if extras:
            lines.append(braces(extras[0].upper() + extras[1:] + "."))
        pings = self.ctx.settings().schedules.mention_room or schedule.ring
        if pings and not await self.runner.may_mention_room(cmd.room_id, cmd.sender):
            lines.append(
                "⚠️ Your power level here is too low to notify the whole room, so the start "
                "notice won't notify everyone" + (" and won't ring." if schedule.ring else ".")
            )
        if schedule.record and not self.runner.can_record:
            lines.append(
                "⚠️ Recording is not available in this version; the call won't be recorded."
            )
        md, html_body = render("\n\n".join(lines), id=str(schedule.id), title=schedule.title)
        await cmd.reply(md, html_body)

    async def _may_record(self, cmd: CommandContext) -> bool:
        """`--record` needs what `!call record start` needs (review L3); says so if not."""
        need = self.ctx.settings().permissions["record"]
        level = await user_level(self.ctx.client, cmd.room_id, cmd.sender)
        if level >= need:
            return True
        await cmd.reply(
            f"Sorry, `--record` needs the power level for recording, {need} (you have "
            f"{level}); my operator sets it as `permissions.record`. Nothing was scheduled."
        )
        return False

    async def _list(self, cmd: CommandContext) -> None:
        now = datetime.now(UTC)
        schedules = await self.store.for_room(cmd.room_id)
        if not schedules:
            await cmd.reply(
                "No schedules in this room. Add one with "
                f"`{cmd.prefix} schedule add tomorrow 09:30 Standup`."
            )
            return
        rows: list[str] = []
        values: dict[str, str] = {}
        for i, s in enumerate(schedules):
            values[f"t{i}"] = s.title
            nxt = next_occurrence(s.rule, now)
            when = f"next {format_local(nxt, s.rule.tz, now)}" if nxt else "no more occurrences"
            extras = _extras(s)
            rows.append(
                f"* **#{s.id} {{t{i}}}** — "
                + braces(f"{describe(s.rule)}; {when}" + (f"; {extras}" if extras else ""))
            )
        md, html_body = render("**Schedules in this room**\n\n" + "\n".join(rows), **values)
        await cmd.reply(md, html_body)

    async def _next(self, cmd: CommandContext) -> None:
        now = datetime.now(UTC)
        upcoming = [
            (occ, s)
            for s in await self.store.for_room(cmd.room_id)
            if (occ := next_occurrence(s.rule, now)) is not None
        ]
        if not upcoming:
            await cmd.reply("Nothing is scheduled in this room.")
            return
        occ, s = min(upcoming, key=lambda pair: (pair[0], pair[1].id))
        md, html_body = render(
            "Next call: **{title}** (#"
            + f"{s.id}) on {format_local(occ, s.rule.tz, now)} ({s.rule.tz}), "
            + f"in {format_delta((occ - now).total_seconds())}.",
            title=s.title,
        )
        await cmd.reply(md, html_body)

    async def _remove(self, cmd: CommandContext) -> None:
        raw = cmd.action_args[0] if cmd.action_args else ""
        digits = raw.removeprefix("#")
        if not digits.isdigit():
            await cmd.reply(
                f"Usage: `{cmd.prefix} schedule remove <id>`; "
                f"`{cmd.prefix} schedule list` shows the ids."
            )
            return
        removed = await self.store.remove(cmd.room_id, int(digits))
        if removed is None:
            await cmd.reply(
                f"There is no schedule #{digits} in this room. "
                f"`{cmd.prefix} schedule list` shows them."
            )
            return
        self.runner.wake()
        md, html_body = render(f"Removed **#{removed.id} " + "{title}**.", title=removed.title)
        await cmd.reply(md, html_body)

    async def _tz(self, cmd: CommandContext) -> None:
        if not cmd.action_args:
            tz, own = await self.room_timezone(cmd.room_id)
            how = "" if own else " (the default)"
            await cmd.reply(
                f"Time zone of new schedules here: {tz}{how}. Change it with "
                f"`{cmd.prefix} schedule tz Europe/Berlin`."
            )
            return
        try:
            tz = resolve_timezone(cmd.action_args[0])
        except RuleError as e:
            await cmd.reply(str(e))
            return
        await self.store.set_timezone(cmd.room_id, tz)
        existing = [s for s in await self.store.for_room(cmd.room_id) if s.rule.tz != tz]
        note = (
            f" {len(existing)} existing schedule(s) keep their own time zone; remove and add "
            "them again to move them."
            if existing
            else ""
        )
        await cmd.reply(f"Time zone set to {tz}: new schedules here use it.{note}")
