"""What a room reads about its calls: "Alice started a call", joins and leaves batched into one
line per window, the end of a call (as a card when the cards are on).

The pure core decides what is said (rtc/announce.py); this class looks up the names, keeps the
order of the posts and sends them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from mautrix.types import EventType, RoomID, UserID

from ..context import BotContext
from ..matrix.encryption_guard import PlaintextRefused
from ..matrix.notices import NAME_LIMIT, md_escape
from ..rtc.announce import (
    JoinBatch,
    NoticeBatcher,
    describe_ended,
    describe_joins,
    describe_started,
    should_post,
)
from ..rtc.session import CallEnded, CallEvent, CallStarted
from .clock import now_ms

# Posts the end of a call as a card (calls/cards.py); False when the card is off.
EndCard = Callable[[str, CallEnded], Awaitable[bool]]


class CallNotices:
    def __init__(self, ctx: BotContext, clock: Callable[[], int] = now_ms) -> None:
        self.ctx = ctx
        self.clock = clock
        self.log = ctx.logger("calls")
        self.batcher = NoticeBatcher(self._batch_ms())
        self.end_card: EndCard | None = None
        self._names: dict[tuple[str, str], str] = {}
        # Bumped by every member event: a lookup that a rename overtook is not cached.
        self._renames: dict[tuple[str, str], int] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _batch_ms(self) -> int:
        return int(self.ctx.settings().notices.batch_seconds * 1000)

    # -- names -------------------------------------------------------------------------------
    def known_name(self, room_id: str, user_id: str) -> str | None:
        return self._names.get((room_id, user_id))

    def name_changed(self, room_id: str, user_id: str) -> None:
        key = (room_id, user_id)
        self._names.pop(key, None)
        self._renames[key] = self._renames.get(key, 0) + 1

    async def display_name(self, room_id: str, user_id: str) -> str:
        key = (room_id, user_id)
        if key not in self._names:
            seen = self._renames.get(key, 0)
            name = None
            client = self.ctx.client
            # maubot's state store already has the member events sync delivered (lazy-loaded
            # for senders): no request in the common case.
            store = client.state_store
            if store is not None:
                with contextlib.suppress(Exception):
                    member = await store.get_member(RoomID(room_id), UserID(user_id))
                    name = getattr(member, "displayname", None)
            if name is None:
                with contextlib.suppress(Exception):
                    content = await client.get_state_event(
                        RoomID(room_id), EventType.ROOM_MEMBER, user_id
                    )
                    name = getattr(content, "displayname", None)
            found = name or user_id[1:].split(":")[0]
            if self._renames.get(key, 0) != seen:
                return found  # renamed meanwhile: the next lookup reads the new name
            self._names[key] = found
        return self._names[key]

    # -- posting -----------------------------------------------------------------------------
    def add(self, ev: CallEvent, now: int) -> None:
        """Joins and leaves wait for their window; starts and ends close it."""
        self.batcher.add(ev, now)

    async def post_calls(
        self, room_id: str, calls: list[CallStarted | CallEnded], origin_ts: int | None
    ) -> None:
        """Post the starts and ends of `calls` in order. Call at once, before any await, so
        that "started" is posted before "ended" (the lock is taken in the order of calls)."""
        async with self._locks.setdefault(room_id, asyncio.Lock()):
            # An encrypted room and no crypto: nothing is said there (the guard logged why).
            with contextlib.suppress(PlaintextRefused):
                await self._post_calls(room_id, calls, origin_ts)

    async def _post_calls(
        self, room_id: str, calls: list[CallStarted | CallEnded], origin_ts: int | None
    ) -> None:
        level = await self._level(room_id)
        metrics = self.ctx.metrics
        for ev in calls:
            if not should_post(level, ev):
                continue
            if isinstance(ev, CallStarted):
                name = md_escape(await self.display_name(room_id, ev.started_by), NAME_LIMIT)
                await self.ctx.notices.send(RoomID(room_id), describe_started(name, ev.intent))
                metrics.announcements.labels("started").inc()
            else:
                if not await self._post_card(room_id, ev):
                    await self.ctx.notices.send(
                        RoomID(room_id), describe_ended(ev.duration_ms, ev.peak_participants)
                    )
                metrics.announcements.labels("ended").inc()
            if isinstance(origin_ts, int):
                metrics.reaction_latency.observe(max(0, self.clock() - origin_ts) / 1000)

    async def _post_card(self, room_id: str, ev: CallEnded) -> bool:
        if self.end_card is None:
            return False
        try:
            return await self.end_card(room_id, ev)
        except PlaintextRefused:
            raise  # the plain line would be withheld too
        except Exception:  # the plain line then: the end of a call is never left unsaid
            self.log.exception("the call card in %s failed", room_id)
            return False

    async def flush(self, now: int) -> None:
        """Post the join/leave lines whose window has passed."""
        self.batcher.window_ms = self._batch_ms()  # a config change applies live
        for batch in self.batcher.flush_due(now):
            await self._post_batch(batch)

    async def _post_batch(self, batch: JoinBatch) -> None:
        if not should_post(await self._level(batch.room_id), batch):
            return
        joined, left = [
            [md_escape(await self.display_name(batch.room_id, u), NAME_LIMIT) for u in users]
            for users in (batch.joined, batch.left)
        ]
        text = describe_joins(joined, left)
        if text:
            # Withheld in an encrypted room without crypto; the other rooms' batches still go.
            with contextlib.suppress(PlaintextRefused):
                await self.ctx.notices.send(RoomID(batch.room_id), text)
                self.ctx.metrics.announcements.labels("joins").inc()

    async def _level(self, room_id: str) -> str:
        return (
            await self.ctx.db.get_notify_level(room_id)
            or self.ctx.settings().notices.default_level
        )

    def forget_room(self, room_id: str) -> None:
        self._locks.pop(room_id, None)
        for key in [k for k in self._names if k[0] == room_id]:
            del self._names[key]
        for key in [k for k in self._renames if k[0] == room_id]:
            del self._renames[key]
