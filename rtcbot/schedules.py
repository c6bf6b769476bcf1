"""`!call schedule …`: calls on a timetable, with reminders, a start notice, a ring, recording.

The rules and the "what is due" decisions are pure (schedule_rules.py); this module stores
schedules in the plugin database, runs the loop that posts, and answers the commands.

Exactly once: every (schedule, occurrence, kind) is claimed with an INSERT before it is
posted, and the loop only looks at occurrences after the last claimed one, so neither a
restart nor a second instance posts anything twice. After a restart the loop catches up:
what was missed within the grace window is posted late, and says so; older is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from mautrix.types import EventType, PowerLevelStateEventContent, RoomID, StateEvent, UserID
from mautrix.util.async_db import Database

from .matrix.notices import _md_to_html
from .schedule_rules import (
    EXAMPLES,
    KIND_ONCE,
    NOBODY,
    REMINDER,
    START,
    Action,
    RuleError,
    Schedule,
    ScheduleRule,
    describe,
    due_actions,
    format_clock,
    format_delta,
    format_local,
    next_due,
    next_occurrence,
    parse_add,
    resolve_timezone,
)

if TYPE_CHECKING:
    from .bot import RtcBot
    from .commands import CommandContext, CommandRouter

RING_TYPE = "org.matrix.msc4075.rtc.notification"
RING = EventType.find(RING_TYPE, EventType.Class.MESSAGE)
RING_LIFETIME_MS = 30_000
MAX_SLEEP_S = 30.0  # wake at least this often, whatever the schedules say
MAX_PER_ROOM = 50
LATE_NOTE = "(posted late: the bot was offline)"

RecordHook = Callable[[str, Schedule], Awaitable[None]]
MembersHook = Callable[[str], Awaitable[bool]]


def _now() -> datetime:
    return datetime.now(UTC)


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _render(template: str, **values: str) -> tuple[str, str]:
    """Markdown (for the plain body) and HTML of `template`; `values` are people's text
    (titles), inserted verbatim in the markdown and escaped in the HTML."""
    markdown = template.format(**values)
    marks = {key: f"RTCBOTVALUE{i}X" for i, key in enumerate(values)}
    html_body = _md_to_html(template.format(**marks))
    for key, mark in marks.items():
        html_body = html_body.replace(mark, html.escape(values[key]))
    return markdown, html_body


def _braces(text: str) -> str:
    """Text placed into a _render template as markdown (ours, not people's)."""
    return text.replace("{", "{{").replace("}", "}}")


# -- storage ---------------------------------------------------------------------------------
class ScheduleStore:
    """The SQL of schedules (tables from upgrade_v2 in migrations.py)."""

    COLUMNS = "id, room_id, creator, rule, title, remind_s, ring, record, duration_s, created_ts"

    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def _schedule(row: Mapping[str, Any]) -> Schedule:
        return Schedule(
            id=int(row["id"]),
            rule=ScheduleRule.from_json(row["rule"]),
            title=str(row["title"]),
            created=_from_ms(int(row["created_ts"])),
            remind_s=int(row["remind_s"]),
            ring=bool(row["ring"]),
            record=bool(row["record"]),
            duration_s=int(row["duration_s"]),
            room_id=str(row["room_id"]),
            creator=str(row["creator"]),
        )

    async def add(
        self,
        room_id: str,
        creator: str,
        rule: ScheduleRule,
        title: str,
        remind_s: int,
        ring: bool,
        record: bool,
        duration_s: int,
        created: datetime,
    ) -> Schedule:
        schedule_id = await self.db.fetchval(
            "INSERT INTO schedule (room_id, creator, rule, title, remind_s, ring, record, "
            "duration_s, created_ts, active) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, true) "
            "RETURNING id",
            room_id,
            creator,
            rule.to_json(),
            title,
            remind_s,
            ring,
            record,
            duration_s,
            _ms(created),
        )
        row = await self.db.fetchrow(
            f"SELECT {self.COLUMNS} FROM schedule WHERE id=$1", int(schedule_id)
        )
        assert row is not None
        return self._schedule(row)

    async def active(self) -> list[Schedule]:
        rows = await self.db.fetch(f"SELECT {self.COLUMNS} FROM schedule WHERE active ORDER BY id")
        return [self._schedule(r) for r in rows]

    async def for_room(self, room_id: str) -> list[Schedule]:
        rows = await self.db.fetch(
            f"SELECT {self.COLUMNS} FROM schedule WHERE active AND room_id=$1 ORDER BY id",
            room_id,
        )
        return [self._schedule(r) for r in rows]

    async def remove(self, room_id: str, schedule_id: int) -> Schedule | None:
        row = await self.db.fetchrow(
            f"SELECT {self.COLUMNS} FROM schedule WHERE id=$1 AND room_id=$2 AND active",
            schedule_id,
            room_id,
        )
        if row is None:
            return None
        await self.db.execute("DELETE FROM schedule_fired WHERE schedule_id=$1", schedule_id)
        await self.db.execute("DELETE FROM schedule WHERE id=$1", schedule_id)
        return self._schedule(row)

    async def deactivate(self, schedule_id: int) -> None:
        await self.db.execute("UPDATE schedule SET active=false WHERE id=$1", schedule_id)

    async def last_fired(self) -> dict[int, dict[str, datetime]]:
        """Per schedule and action kind, the latest occurrence handled."""
        rows = await self.db.fetch(
            "SELECT schedule_id, kind, MAX(occurrence_ts) AS ts FROM schedule_fired "
            "GROUP BY schedule_id, kind"
        )
        out: dict[int, dict[str, datetime]] = {}
        for r in rows:
            out.setdefault(int(r["schedule_id"]), {})[str(r["kind"])] = _from_ms(int(r["ts"]))
        return out

    async def claim(self, schedule_id: int, occurrence: datetime, kind: str, outcome: str) -> bool:
        """True for the first caller only: posting this action is then theirs."""
        occ_ms = _ms(occurrence)
        row = await self.db.fetchrow(
            "INSERT INTO schedule_fired (schedule_id, occurrence_ts, kind, outcome, fired_ts) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (schedule_id, occurrence_ts, kind) "
            "DO NOTHING RETURNING schedule_id",
            schedule_id,
            occ_ms,
            kind,
            outcome,
            int(time.time() * 1000),
        )
        if row is None:
            return False
        # Only the latest row per kind matters; keep a week of history for the curious.
        await self.db.execute(
            "DELETE FROM schedule_fired WHERE schedule_id=$1 AND kind=$2 AND occurrence_ts<$3",
            schedule_id,
            kind,
            occ_ms - 7 * 86_400_000,
        )
        return True

    async def get_timezone(self, room_id: str) -> str | None:
        val = await self.db.fetchval("SELECT tz FROM room_timezone WHERE room_id=$1", room_id)
        return str(val) if val else None

    async def set_timezone(self, room_id: str, tz: str) -> None:
        await self.db.execute(
            "INSERT INTO room_timezone (room_id, tz) VALUES ($1, $2) "
            "ON CONFLICT (room_id) DO UPDATE SET tz=excluded.tz",
            room_id,
            tz,
        )


# -- the manager -----------------------------------------------------------------------------
class ScheduleManager:
    """Hooks the lead wires: `on_start_record(room_id, schedule)` (the bot joins to record)
    and `call_has_members(room_id)` (for the nobody-joined note; defaults to the call model)."""

    def __init__(self, bot: RtcBot) -> None:
        self.bot = bot
        self.log = logging.getLogger("rtcbot.schedules")
        self.store = ScheduleStore(bot.db.db)
        self.on_start_record: RecordHook | None = None
        self.call_has_members: MembersHook = self._call_has_members
        self.online_since = _now()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._background: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self.online_since = _now()
        self._stopping = False
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            # Let a tick that is posting finish (a claimed action should be posted), briefly.
            done, _ = await asyncio.wait({self._task}, timeout=5)
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
            self._task = None
        for task in list(self._background):
            task.cancel()
        self._background.clear()

    def wake(self) -> None:
        """Re-plan now (a schedule was added or removed)."""
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            tick_at = _now()
            try:
                next_at = await self.tick(tick_at)
            except Exception:
                self.log.exception("schedule tick failed")
                next_at = None
            delay = MAX_SLEEP_S
            if next_at is not None and next_at <= tick_at:
                delay = 1.0  # due already, yet the tick did nothing: don't spin
            elif next_at is not None:
                delay = min(max((next_at - _now()).total_seconds(), 0.05), MAX_SLEEP_S)
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def tick(self, now: datetime | None = None) -> datetime | None:
        """Post what is due; return when the next action is due (None: nothing planned)."""
        now = now or _now()
        cfg = self.bot.settings.schedules
        grace = timedelta(minutes=cfg.grace_minutes)
        fired = await self.store.last_fired()
        earliest: datetime | None = None
        for schedule in await self.store.active():
            if self._stopping:
                break
            try:
                last = dict(fired.get(schedule.id, {}))
                actions = due_actions(
                    schedule,
                    last,
                    now,
                    grace,
                    online_since=self.online_since,
                    nobody_note=cfg.nobody_joined_note,
                )
                for action in actions:
                    await self._perform(schedule, action, now)
                    if last.get(action.kind) is None or last[action.kind] < action.occurrence:
                        last[action.kind] = action.occurrence
                upcoming = next_due(schedule, last, cfg.nobody_joined_note)
                if upcoming is None:
                    if schedule.rule.kind == KIND_ONCE:
                        await self.store.deactivate(schedule.id)
                        self.log.info("schedule #%d (%s) is over", schedule.id, schedule.title)
                elif earliest is None or upcoming < earliest:
                    earliest = upcoming
            except Exception:
                self.log.exception("schedule #%d failed", schedule.id)
        return earliest

    # -- posting -----------------------------------------------------------------------------
    async def _perform(self, schedule: Schedule, action: Action, now: datetime) -> None:
        outcome = "skipped" if action.skipped else "late" if action.late else "posted"
        if not await self.store.claim(schedule.id, action.occurrence, action.kind, outcome):
            return  # handled already (another instance, or a tick before a restart)
        if action.skipped:
            self.log.warning(
                "schedule #%d (%s) in %s: skipped the %s for %s: %s",
                schedule.id,
                schedule.title,
                schedule.room_id,
                action.kind,
                action.occurrence.isoformat(),
                action.reason,
            )
            return
        room = RoomID(schedule.room_id)
        late = f" {LATE_NOTE}" if action.late else ""
        clock = format_clock(action.occurrence.astimezone(ZoneInfo(schedule.rule.tz)))
        extra = {
            "schedule": {
                "id": schedule.id,
                "kind": action.kind,
                "occurrence_ts": _ms(action.occurrence),
                "late": action.late,
            }
        }
        try:
            if action.kind == REMINDER:
                left = format_delta((action.occurrence - now).total_seconds())
                md, html_body = _render(
                    "⏰ **{title}** starts in " + f"{left} ({clock}).{late}",
                    title=schedule.title,
                )
                await self.bot.notices.send(room, md, html_body, extra=extra)
            elif action.kind == START:
                await self._start(schedule, action, clock, late, extra)
            elif action.kind == NOBODY:
                if await self.call_has_members(schedule.room_id):
                    return
                md, html_body = _render(
                    "Nobody joined the call for **{title}** " + f"({clock}).{late}",
                    title=schedule.title,
                )
                await self.bot.notices.send(room, md, html_body, extra=extra)
            self.log.info(
                "schedule #%d in %s: posted the %s for %s%s",
                schedule.id,
                schedule.room_id,
                action.kind,
                action.occurrence.isoformat(),
                " (late)" if action.late else "",
            )
        except Exception:
            self.log.exception(
                "schedule #%d in %s: could not post the %s",
                schedule.id,
                schedule.room_id,
                action.kind,
            )

    async def _start(
        self, schedule: Schedule, action: Action, clock: str, late: str, extra: dict[str, Any]
    ) -> None:
        room = RoomID(schedule.room_id)
        # The bot pings the room for whoever made the schedule: only for those who may.
        may_ping = await self.may_mention_room(schedule.room_id, schedule.creator)
        mention = self.bot.settings.schedules.mention_room and may_ping
        prefix = "@room " if mention else ""
        if action.late:
            text = (
                prefix
                + "📞 **{title}** started at "
                + f"{clock}: join the call in this room.{late}"
            )
        else:
            text = prefix + "📞 **{title}** starts now: join the call in this room."
        md, html_body = _render(text, title=schedule.title)
        await self.bot.notices.send(room, md, html_body, extra=extra, mentions_room=mention)
        if schedule.ring and may_ping:
            await self.ring(schedule.room_id)
        if schedule.record:
            if self.on_start_record is None:
                self.log.warning(
                    "schedule #%d wants a recording; recording is not wired", schedule.id
                )
            else:
                self._in_background(self.on_start_record(schedule.room_id, schedule))

    async def ring(self, room_id: str, intent: str = "audio") -> None:
        """Ring the room's members the way Element clients ring (MSC4075). The bot is not in
        the call, so there is no membership for an m.relates_to to point at."""
        content: Any = {
            "m.mentions": {"user_ids": [], "room": True},
            "notification_type": "ring",
            "sender_ts": int(time.time() * 1000),
            "lifetime": RING_LIFETIME_MS,
            "m.call.intent": intent,
        }
        await self.bot.client.send_message_event(RoomID(room_id), RING, content)

    async def may_mention_room(self, room_id: str, user_id: str) -> bool:
        """Whether `user_id` has the power level to notify the whole room (@room)."""
        client = self.bot.client
        try:
            levels = await client.get_state_event(RoomID(room_id), EventType.ROOM_POWER_LEVELS)
            create = await client.get_state_event(
                RoomID(room_id), EventType.ROOM_CREATE, format="event"
            )
            assert isinstance(levels, PowerLevelStateEventContent)
            assert isinstance(create, StateEvent)
            level = levels.get_user_level(UserID(user_id), create=create)
            return level >= levels.notifications.room
        except Exception as e:
            self.log.warning("could not read the power levels of %s: %s", room_id, e)
            return False

    def _in_background(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("schedule hook failed")

        task = asyncio.ensure_future(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _call_has_members(self, room_id: str) -> bool:
        calls = await self.bot.calls.room(room_id)
        call = calls.call()
        me = str(self.bot.client.mxid)
        return call is not None and any(u != me for u in call.user_ids())

    # -- commands ----------------------------------------------------------------------------
    def register(self, router: CommandRouter) -> None:
        router.add(
            "schedule",
            "add|list|next|remove|tz …",
            "calls on a timetable: reminders, a start notice, ringing, recording",
            self.command,
        )

    async def command(self, ctx: CommandContext) -> None:
        sub = ctx.line.args[0].lower() if ctx.line.args else ""
        handlers = {
            "add": self._add,
            "list": self._list,
            "ls": self._list,
            "next": self._next,
            "remove": self._remove,
            "rm": self._remove,
            "delete": self._remove,
            "tz": self._tz,
            "timezone": self._tz,
        }
        handler = handlers.get(sub)
        if handler is None:
            await ctx.reply(self._usage(ctx))
            return
        await handler(ctx)

    def _usage(self, ctx: CommandContext) -> str:
        p = f"{ctx.bot.router.prefix} schedule"
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
        return self.bot.settings.schedules.default_timezone, False

    async def _add(self, ctx: CommandContext) -> None:
        now = _now()
        tz, _ = await self.room_timezone(ctx.room_id)
        try:
            parsed = parse_add(ctx.line.args[1:], now, tz)
        except RuleError as e:
            await ctx.reply(f"{e}\n\nUsage: `{ctx.bot.router.prefix} schedule add <when> <title>`")
            return
        if len(await self.store.for_room(ctx.room_id)) >= MAX_PER_ROOM:
            await ctx.reply(
                f"This room has {MAX_PER_ROOM} schedules already; remove one first "
                f"(`{ctx.bot.router.prefix} schedule list` shows them)."
            )
            return
        opts = parsed.options
        schedule = await self.store.add(
            ctx.room_id,
            ctx.sender,
            parsed.rule,
            parsed.title,
            opts.remind_s,
            opts.ring,
            opts.record,
            opts.duration_s,
            now,
        )
        self.wake()
        nxt = next_occurrence(schedule.rule, now)
        lines = ["Scheduled **#{id} {title}**: " + _braces(describe(schedule.rule)) + "."]
        if nxt is not None:
            line = f"Next: {format_local(nxt, schedule.rule.tz, now)}, in {format_delta((nxt - now).total_seconds())}."
            if schedule.remind_s and nxt - timedelta(seconds=schedule.remind_s) <= now:
                line += " That one is too close for its reminder."
            lines.append(_braces(line))
        extras = self._extras(schedule)
        if extras:
            lines.append(_braces(extras[0].upper() + extras[1:] + "."))
        pings = self.bot.settings.schedules.mention_room or schedule.ring
        if pings and not await self.may_mention_room(ctx.room_id, ctx.sender):
            lines.append(
                "⚠️ Your power level here is too low to notify the whole room, so the start "
                "notice won't notify everyone" + (" and won't ring." if schedule.ring else ".")
            )
        if schedule.record and self.on_start_record is None:
            lines.append(
                "⚠️ Recording is not available in this version; the call won't be recorded."
            )
        md, html_body = _render("\n\n".join(lines), id=str(schedule.id), title=schedule.title)
        await ctx.reply(md, html_body)

    @staticmethod
    def _extras(schedule: Schedule) -> str:
        parts = []
        if schedule.remind_s:
            parts.append(f"reminder {format_delta(schedule.remind_s)} before")
        if schedule.ring:
            parts.append("rings the room")
        if schedule.record:
            parts.append("the bot records")
        if schedule.duration_s:
            parts.append(f"{format_delta(schedule.duration_s)} long")
        return ", ".join(parts)

    async def _list(self, ctx: CommandContext) -> None:
        now = _now()
        schedules = await self.store.for_room(ctx.room_id)
        if not schedules:
            await ctx.reply(
                "No schedules in this room. Add one with "
                f"`{ctx.bot.router.prefix} schedule add tomorrow 09:30 Standup`."
            )
            return
        rows: list[str] = []
        values: dict[str, str] = {}
        for i, s in enumerate(schedules):
            values[f"t{i}"] = s.title
            nxt = next_occurrence(s.rule, now)
            when = f"next {format_local(nxt, s.rule.tz, now)}" if nxt else "no more occurrences"
            extras = self._extras(s)
            rows.append(
                f"* **#{s.id} {{t{i}}}** — "
                + _braces(f"{describe(s.rule)}; {when}" + (f"; {extras}" if extras else ""))
            )
        md, html_body = _render("**Schedules in this room**\n\n" + "\n".join(rows), **values)
        await ctx.reply(md, html_body)

    async def _next(self, ctx: CommandContext) -> None:
        now = _now()
        upcoming = [
            (occ, s)
            for s in await self.store.for_room(ctx.room_id)
            if (occ := next_occurrence(s.rule, now)) is not None
        ]
        if not upcoming:
            await ctx.reply("Nothing is scheduled in this room.")
            return
        occ, s = min(upcoming, key=lambda pair: (pair[0], pair[1].id))
        md, html_body = _render(
            "Next call: **{title}** (#"
            + f"{s.id}) on {format_local(occ, s.rule.tz, now)} ({s.rule.tz}), "
            + f"in {format_delta((occ - now).total_seconds())}.",
            title=s.title,
        )
        await ctx.reply(md, html_body)

    async def _remove(self, ctx: CommandContext) -> None:
        raw = ctx.line.args[1] if len(ctx.line.args) > 1 else ""
        digits = raw.removeprefix("#")
        if not digits.isdigit():
            await ctx.reply(
                f"Usage: `{ctx.bot.router.prefix} schedule remove <id>`; "
                f"`{ctx.bot.router.prefix} schedule list` shows the ids."
            )
            return
        removed = await self.store.remove(ctx.room_id, int(digits))
        if removed is None:
            await ctx.reply(
                f"There is no schedule #{digits} in this room. "
                f"`{ctx.bot.router.prefix} schedule list` shows them."
            )
            return
        self.wake()
        md, html_body = _render(f"Removed **#{removed.id} " + "{title}**.", title=removed.title)
        await ctx.reply(md, html_body)

    async def _tz(self, ctx: CommandContext) -> None:
        if len(ctx.line.args) < 2:
            tz, own = await self.room_timezone(ctx.room_id)
            how = "" if own else " (the default)"
            await ctx.reply(
                f"Time zone of new schedules here: {tz}{how}. Change it with "
                f"`{ctx.bot.router.prefix} schedule tz Europe/Berlin`."
            )
            return
        try:
            tz = resolve_timezone(ctx.line.args[1])
        except RuleError as e:
            await ctx.reply(str(e))
            return
        await self.store.set_timezone(ctx.room_id, tz)
        existing = [s for s in await self.store.for_room(ctx.room_id) if s.rule.tz != tz]
        note = (
            f" {len(existing)} existing schedule(s) keep their own time zone; remove and add "
            "them again to move them."
            if existing
            else ""
        )
        await ctx.reply(f"Time zone set to {tz}: new schedules here use it.{note}")
