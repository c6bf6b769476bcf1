"""The bot's own call membership: runs the plan of rtc/membership_plan.py against the homeserver.

One loop per room takes the next due action of the plan, runs it (a delayed-events or state
request), and steps the plan with the result; requests (`join`, `leave`) and a removed
membership (`on_own_state`) step it directly. No lock and no second task: what is decided is
decided in the pure planner, with fake-clock tests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..rtc import membership_plan as mp
from ..rtc.membership import MAX_STICKY_DURATION_MS
from ..rtc.state_keys import make_state_key
from ..tasks import cancel_and_wait
from .delayed_events import (
    DelayedEventError,
    DelayedEventNotFound,
    DelayedEvents,
    DelayedEventsUnsupported,
    DelayTooLarge,
    RateLimited,
    RequestRefused,
    TransientError,
)
from .membership_settings import MembershipSettings
from .membership_wire import MembershipWire, StateWire

State = mp.Phase
LeaveMode = mp.Mode


class PublishError(Exception):
    """Joining failed for good; the message is for people."""


@dataclass
class PublisherStatus:
    state: State
    mode: LeaveMode | None
    delay_ms: int | None
    has_delayed_leave: bool
    heartbeats_ok: int
    heartbeat_failures: int
    last_heartbeat_ts: float | None
    expires_at_ms: int | None
    joined_since_ms: int | None
    rejoins: int
    last_error: str | None
    fallback_reason: str | None


class MembershipPublisher:
    def __init__(
        self,
        delayed: DelayedEvents,
        room_id: str,
        user_id: str,
        device_id: str,
        settings: MembershipSettings,
        foci_preferred: list[dict[str, Any]],
        log: logging.Logger,
        max_delay_ms: int | None = None,
        delayed_events_usable: bool = True,
        clock: Callable[[], float] = time.time,
        on_heartbeat_failure: Callable[[], None] | None = None,
        on_fallback: Callable[[], None] | None = None,
        wire: MembershipWire | None = None,
    ) -> None:
        self.delayed = delayed
        self.room_id = room_id
        self.user_id = user_id
        self.device_id = device_id
        self.foci_preferred = foci_preferred
        self.log = log
        self.clock = clock
        self.on_heartbeat_failure = on_heartbeat_failure
        self.on_fallback = on_fallback
        self.state_key = make_state_key(user_id, device_id)
        # Element Call's state event, or MSC4143 current's sticky message (membership_wire.py).
        self.wire: MembershipWire = wire or StateWire(user_id, device_id, foci_preferred)
        sticky = self.wire.dialect == "current"
        timings = mp.Timings(
            settings.delayed_leave_ms,
            settings.restart_interval_ms,
            # A sticky membership lasts as long as its stickiness: refreshed before that.
            min(settings.expires_ms, MAX_STICKY_DURATION_MS) if sticky else settings.expires_ms,
            min(settings.fallback_expires_ms, MAX_STICKY_DURATION_MS),
        )
        self.plan = mp.initial(timings, max_delay_ms, delayed_events_usable)
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._waiters: list[tuple[asyncio.Future[None], State]] = []

    # -- what the rest of the bot sees -------------------------------------------------------
    @property
    def state(self) -> State:
        return self.plan.phase

    @property
    def mode(self) -> LeaveMode:
        return self.plan.mode

    def status(self) -> PublisherStatus:
        p = self.plan
        return PublisherStatus(
            state=p.phase,
            mode=p.mode if p.phase != State.IDLE else None,
            delay_ms=p.delay_ms if p.mode == LeaveMode.DELAYED else None,
            has_delayed_leave=p.delay_id is not None,
            heartbeats_ok=p.heartbeats_ok,
            heartbeat_failures=p.heartbeat_failures,
            last_heartbeat_ts=p.last_heartbeat_ms / 1000 if p.last_heartbeat_ms else None,
            expires_at_ms=p.expires_at_ms(),
            joined_since_ms=p.created_ts,
            rejoins=p.rejoins,
            last_error=p.last_error,
            fallback_reason=p.fallback_reason,
        )

    async def join(self, intent: str = "audio") -> None:
        """Publish the membership; return once it is in the room state (or raise PublishError)."""
        self._step(mp.Join(intent))
        await self._until(State.JOINED)

    async def leave(self) -> None:
        """Send the delayed leave now (else put `{}`); return once the membership is gone."""
        self._step(mp.Leave())
        if self.plan.phase != State.IDLE:
            await self._until(State.IDLE)

    def on_own_state(self, content: dict[str, Any], origin_ts: int | None = None) -> None:
        """Our state key changed in the room; empty while we mean to stay (the delayed leave
        fired after missed heartbeats, or someone overwrote it): the plan puts it back."""
        if not content:
            self._step(mp.Removed(origin_ts))

    async def close(self) -> None:
        """Stop the loop (no request sent); whoever waits is told the publisher closed."""
        loop, self._loop = self._loop, None
        await cancel_and_wait(loop)
        self._settle(closing=True)

    # -- the loop ----------------------------------------------------------------------------
    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _step(self, event: mp.Event) -> None:
        before = self.plan
        self.plan = mp.step(self.plan, event, self._now_ms())
        self._report(before, self.plan)
        self._settle()
        self._wake.set()
        if self._loop is None or self._loop.done():
            self._loop = asyncio.create_task(self._run(), name=f"rtcbot:membership {self.room_id}")

    async def _until(self, wanted: State) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((waiter, wanted))
        self._settle()
        await waiter

    def _settle(self, closing: bool = False) -> None:
        """Tell the waiters whose outcome is known."""
        phase, still = self.plan.phase, []
        for waiter, wanted in self._waiters:
            if waiter.done():
                continue
            if phase == wanted:
                waiter.set_result(None)
            elif phase == State.FAILED and wanted == State.JOINED:
                why = self.plan.last_error or "unknown error"
                waiter.set_exception(PublishError(f"could not publish the call membership: {why}"))
            elif closing:
                waiter.set_exception(PublishError("the bot stopped before that was done"))
            else:
                still.append((waiter, wanted))
        self._waiters = still

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            self.plan, action, wait_ms = mp.next_action(self.plan, self._now_ms())
            if action is None:
                if wait_ms is None and self.plan.phase in (State.IDLE, State.FAILED):
                    return  # nothing to keep: the next request starts a new loop
                timeout = None if wait_ms is None else wait_ms / 1000
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    pass
                continue
            await asyncio.sleep(0)  # one action at a time, never starving the event loop
            result = await self._execute(action)
            before = self.plan
            self.plan = mp.step(self.plan, result, self._now_ms())
            self._report(before, self.plan)
            self._settle()

    def _report(self, before: mp.Plan, after: mp.Plan) -> None:
        if after.mode != before.mode:
            self.log.warning("%s: falling back to an expiring membership", after.fallback_reason)
            if self.on_fallback:
                self.on_fallback()
        if after.delay_ms != before.delay_ms:
            self.log.info("delay above the server's maximum; using %d ms", after.delay_ms)
        if after.heartbeat_failures > before.heartbeat_failures:
            self.log.warning("heartbeat in %s failed: %s", self.room_id, after.last_error)
            if self.on_heartbeat_failure:
                self.on_heartbeat_failure()
        if after.rejoins > before.rejoins:
            self.log.warning(
                "the bot's call membership in %s is gone; joining again", self.room_id
            )
        if after.phase == State.FAILED and before.phase != State.FAILED:
            self.log.error("joining the call in %s failed: %s", self.room_id, after.last_error)

    # -- one action --------------------------------------------------------------------------
    async def _execute(self, action: mp.Action) -> mp.Result:
        try:
            return await self._run_action(action)
        except asyncio.CancelledError:
            raise
        except DelayedEventNotFound as e:
            return mp.Result(action, mp.Got.NOT_FOUND, error=str(e))
        except DelayTooLarge as e:
            return mp.Result(action, mp.Got.TOO_LARGE, max_delay_ms=e.max_delay_ms, error=str(e))
        except (DelayedEventsUnsupported, RequestRefused) as e:
            return mp.Result(action, mp.Got.UNSUPPORTED, error=str(e))
        except RateLimited as e:
            return mp.Result(
                action, mp.Got.RATE_LIMITED, retry_after_ms=e.retry_after_ms, error=str(e)
            )
        except (TransientError, TimeoutError) as e:
            return mp.Result(action, mp.Got.TRANSIENT, error=str(e) or "timed out")
        except Exception as e:  # the plan decides; the loop lives on
            self.log.warning("%s in %s failed: %s", action.do, self.room_id, e)
            return mp.Result(action, mp.Got.FAILED, error=f"{type(e).__name__}: {e}")

    async def _run_action(self, action: mp.Action) -> mp.Result:
        p, d = self.plan, self.delayed
        ok = mp.Result(action, mp.Got.OK)
        if action.do == mp.Do.CANCEL_STALE:
            await self._cancel_stale()
        elif action.do == mp.Do.CANCEL_OWN and p.delay_id:
            await d.cancel(p.delay_id)
        elif action.do == mp.Do.SCHEDULE_LEAVE:
            delay_id = await self.wire.schedule_leave(d, self.room_id, p.delay_ms)
            return mp.Result(action, mp.Got.OK, delay_id=delay_id)
        elif action.do in (mp.Do.SEND_JOIN, mp.Do.REFRESH):
            return mp.Result(action, mp.Got.OK, origin_ts=await self._send_membership(action))
        elif action.do == mp.Do.RESTART_LEAVE and p.delay_id:
            # Local timeout: an answer later than this is useless, the server would have fired.
            async with asyncio.timeout(max(0.5, min(2.0, p.delay_ms / 4000))):
                await d.restart(p.delay_id)
        elif action.do == mp.Do.SEND_LEAVE and p.delay_id:
            await d.send(p.delay_id)  # the scheduled `{}` goes out now
        elif action.do == mp.Do.PUT_LEAVE:
            await self.wire.put_leave(d, self.room_id)
        return ok

    async def _send_membership(self, action: mp.Action) -> int | None:
        content = self.wire.join_content(
            expires_ms=mp.sent_expiry_ms(self.plan, action),
            intent=self.plan.intent,
            created_ts=self.plan.created_ts,
        )
        event_id = await self.wire.send(self.delayed, self.room_id, content)
        try:
            ts = (await self.delayed.get_event(self.room_id, event_id)).get("origin_server_ts")
        except DelayedEventError as e:
            self.log.debug("could not read back the membership event: %s", e)
            return None
        return ts if isinstance(ts, int) else None

    async def _cancel_stale(self) -> None:
        try:
            pending = await self.delayed.list()
        except DelayedEventError as e:
            self.log.debug("could not list pending delayed events: %s", e)
            return
        for delay_id in self.wire.stale(pending, self.room_id, self.plan.delay_id):
            try:
                await self.delayed.cancel(delay_id)
                self.log.info("cancelled a stale delayed leave in %s", self.room_id)
            except DelayedEventError as e:
                self.log.debug("could not cancel a stale delayed leave: %s", e)
