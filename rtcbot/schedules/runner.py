"""The loop that posts what schedules say is due: reminders, the start notice (with @room and
a ring for those who may ping the room), the nobody-joined note, and the recording hook.

Exactly once: every (schedule, occurrence, kind) is claimed with an INSERT before it is
posted, and the loop only looks at occurrences after the last claimed one, so neither a
restart nor a second instance posts anything twice. After a restart the loop catches up:
what was missed within the grace window is posted late, and says so; older is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from mautrix.types import (
    EventType,
    Membership,
    PowerLevelStateEventContent,
    RoomID,
    StateEvent,
    UserID,
)

from ..context import BotContext
from ..matrix.permissions import user_level
from ..ports import CallDirectory
from ..tasks import cancel_and_wait
from .format import format_clock, format_delta
from .occurrences import KIND_ONCE, Schedule, to_ms
from .plan import NOBODY, REMINDER, START, Action, due_actions, next_due
from .render import render
from .store import ScheduleStore

RING_TYPE = "org.matrix.msc4075.rtc.notification"
RING = EventType.find(RING_TYPE, EventType.Class.MESSAGE)
RING_LIFETIME_MS = 30_000
MAX_SLEEP_S = 30.0  # wake at least this often, whatever the schedules say
STOP_GRACE_S = 5.0  # how long stop() lets a tick that is posting finish
LATE_NOTE = "(posted late: I was offline)"
# At the start of a schedule whose creator left or was demoted (review L3): one fixed sentence.
CREATOR_GONE = (
    "⚠️ No ring and no recording: whoever made this schedule has left the room or no longer "
    "has the power level for it."
)

# Called at the start notice of a schedule with `record` (room_id, schedule): the bot joins
# the call and records. It runs in the background; stop() cancels it.
RecordHook = Callable[[str, Schedule], Awaitable[None]]


def _now() -> datetime:
    return datetime.now(UTC)


class ScheduleRunner:
    def __init__(
        self,
        ctx: BotContext,
        calls: CallDirectory,
        start_recording: RecordHook | None = None,
    ) -> None:
        self.ctx = ctx
        self.calls = calls
        self.start_recording = start_recording
        self.store = ScheduleStore(ctx.db.db)
        self.log = ctx.logger("schedules")
        self.online_since = _now()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._hooks: set[asyncio.Task[Any]] = set()

    @property
    def can_record(self) -> bool:
        """Whether `--record` does anything (a recording hook is wired)."""
        return self.start_recording is not None

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self.online_since = _now()
        self._stopping = False
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop the loop and every hook it started; nothing of ours runs after this returns."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        # Let a tick that is posting finish (a claimed action should be posted), briefly.
        await cancel_and_wait(task, grace_s=STOP_GRACE_S)
        await cancel_and_wait(*self._hooks)
        self._hooks.clear()

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
        cfg = self.ctx.settings().schedules
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
                "occurrence_ts": to_ms(action.occurrence),
                "late": action.late,
            }
        }
        try:
            if action.kind == REMINDER:
                left = format_delta((action.occurrence - now).total_seconds())
                md, html_body = render(
                    "⏰ **{title}** starts in " + f"{left} ({clock}).{late}",
                    title=schedule.title,
                )
                await self.ctx.notices.send(room, md, html_body, extra=extra)
            elif action.kind == START:
                await self._start(schedule, action, clock, late, extra)
            elif action.kind == NOBODY:
                if await self._call_has_members(schedule.room_id):
                    return
                md, html_body = render(
                    "Nobody joined the call for **{title}** " + f"({clock}).{late}",
                    title=schedule.title,
                )
                await self.ctx.notices.send(room, md, html_body, extra=extra)
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
        # The bot acts for whoever made the schedule, with their levels of now, not of then.
        trusted = await self.creator_still_may(schedule)
        # It pings the room for them only if they may.
        may_ping = trusted and await self.may_mention_room(schedule.room_id, schedule.creator)
        mention = self.ctx.settings().schedules.mention_room and may_ping
        prefix = "@room " if mention else ""
        if action.late:
            text = (
                prefix
                + "📞 **{title}** started at "
                + f"{clock}: join the call in this room.{late}"
            )
        else:
            text = prefix + "📞 **{title}** starts now: join the call in this room."
        if not trusted and (schedule.ring or schedule.record):
            text += f"\n\n{CREATOR_GONE}"
        md, html_body = render(text, title=schedule.title)
        await self.ctx.notices.send(room, md, html_body, extra=extra, mentions_room=mention)
        if schedule.ring and may_ping:
            await self.ring(schedule.room_id)
        if schedule.record and trusted:
            if self.start_recording is None:
                self.log.warning(
                    "schedule #%d wants a recording; recording is not wired", schedule.id
                )
            else:
                self._spawn_hook(self.start_recording, schedule)

    def _spawn_hook(self, hook: RecordHook, schedule: Schedule) -> None:
        """Run `hook` in the background, tracked: stop() cancels and awaits it."""

        async def run() -> None:
            try:
                await hook(schedule.room_id, schedule)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("schedule hook failed")

        task = self.ctx.tasks.spawn(run(), f"schedule-{schedule.id}-record")
        if task is None:  # the plugin is stopping: nothing new starts
            self.log.warning("schedule #%d: not recording, the bot is stopping", schedule.id)
            return
        self._hooks.add(task)
        task.add_done_callback(self._hooks.discard)

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
        await self.ctx.client.send_message_event(RoomID(room_id), RING, content)

    async def creator_still_may(self, schedule: Schedule) -> bool:
        """Whether the schedule's creator is still in the room with the levels its start acts
        on: `schedule_add`, and `record` if it records."""
        perms = self.ctx.settings().permissions
        need = max(perms["schedule_add"], perms["record"] if schedule.record else 0)
        room, creator = RoomID(schedule.room_id), UserID(schedule.creator)
        try:
            member = await self.ctx.client.get_state_event(room, EventType.ROOM_MEMBER, creator)
            if getattr(member, "membership", None) != Membership.JOIN:
                return False
            return await user_level(self.ctx.client, room, creator) >= need
        except Exception as e:  # never a member (M_NOT_FOUND), or the levels unreadable
            self.log.info("schedule #%d: its creator's level is unknown: %s", schedule.id, e)
            return False

    async def may_mention_room(self, room_id: str, user_id: str) -> bool:
        """Whether `user_id` has the power level to notify the whole room (@room)."""
        client = self.ctx.client
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

    async def _call_has_members(self, room_id: str) -> bool:
        """Whether anyone but the bot is in the room's call (for the nobody-joined note)."""
        call = (await self.calls.room(room_id)).call()
        me = self.ctx.user_id
        return call is not None and any(u != me for u in call.user_ids())
