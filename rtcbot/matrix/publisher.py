"""The bot's own call membership: explicit states and named retry policies.

Modelled on matrix-js-sdk's MembershipManager: schedule the delayed leave (`{}`) → send the
join → restart the delayed leave on an interval shorter than the delay (with a local timeout)
→ refresh `expires` before it runs out, keeping `created_ts` → on leave, `send` the delayed
leave, falling back to `PUT {}`. Where the homeserver has no delayed events, the membership
carries a short `expires` that is refreshed on time instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..matrix.membership_settings import MembershipSettings
from ..rtc.membership import CALL_MEMBER_TYPE
from ..rtc.own_content import session_content
from ..rtc.state_keys import make_state_key
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


class State(StrEnum):
    IDLE = "not in the call"
    SCHEDULING_LEAVE = "scheduling the delayed leave"
    JOINING = "sending the membership"
    JOINED = "in the call"
    LEAVING = "leaving"
    FAILED = "failed"


class LeaveMode(StrEnum):
    DELAYED = "delayed leave"
    EXPIRING = "expiring membership"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before retrying one kind of failure."""

    name: str
    max_attempts: int
    wait_s: float


RATE_LIMIT = RetryPolicy("rate-limit", 10, 5.0)  # or the server's retry_after_ms
NETWORK = RetryPolicy("network", 10, 3.0)
DELAY_TOO_LARGE = RetryPolicy("delay-too-large", 3, 0.0)

# Refresh the membership this long before it would expire.
EXPIRY_HEADROOM_MS = 5_000


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
    ) -> None:
        self.delayed = delayed
        self.room_id = room_id
        self.user_id = user_id
        self.device_id = device_id
        self.settings = settings
        self.foci_preferred = foci_preferred
        self.log = log
        self.clock = clock
        self.on_heartbeat_failure = on_heartbeat_failure
        self.state_key = make_state_key(user_id, device_id)
        self.state = State.IDLE
        self.intent: str = "audio"
        self.want_joined = False
        self.delay_id: str | None = None
        self.delay_ms = settings.delayed_leave_ms
        # The advertised maximum is only a fallback: the server's answer to a too-large delay
        # is what we adapt to (servers disagree on how they say it, see delayed_events.py).
        self.max_delay_ms = max_delay_ms
        self.mode = LeaveMode.DELAYED if delayed_events_usable else LeaveMode.EXPIRING
        self.fallback_reason: str | None = (
            None if delayed_events_usable else "the homeserver does not offer delayed events"
        )
        self.created_ts: int | None = None
        self.expiry_iteration = 1
        self.join_event_id: str | None = None
        self.heartbeats_ok = 0
        self.heartbeat_failures = 0
        self.last_heartbeat: float | None = None
        self.rejoins = 0
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._rejoin_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    # -- public ------------------------------------------------------------------------------
    def status(self) -> PublisherStatus:
        return PublisherStatus(
            state=self.state,
            mode=self.mode if self.state != State.IDLE else None,
            delay_ms=self.delay_ms if self.mode == LeaveMode.DELAYED else None,
            has_delayed_leave=self.delay_id is not None,
            heartbeats_ok=self.heartbeats_ok,
            heartbeat_failures=self.heartbeat_failures,
            last_heartbeat_ts=self.last_heartbeat,
            expires_at_ms=self._expires_at_ms(),
            joined_since_ms=self.created_ts,
            rejoins=self.rejoins,
            last_error=self.last_error,
            fallback_reason=self.fallback_reason,
        )

    async def join(self, intent: str = "audio") -> None:
        """Publish the membership; return once it is in the room state (or raise PublishError)."""
        async with self._lock:
            self.intent = intent
            self.want_joined = True
            if self.state == State.IDLE:
                await self._cancel_stale_leaves()
            await self._join_sequence()
            self._start_heartbeat()

    async def leave(self) -> None:
        async with self._lock:
            self.want_joined = False
            await self._stop_heartbeat()
            if self.state == State.IDLE:
                return
            self.state = State.LEAVING
            sent = False
            if self.delay_id:
                try:
                    await self.delayed.send(self.delay_id)  # the scheduled `{}` goes out now
                    sent = True
                except DelayedEventError as e:
                    self.log.debug("sending the delayed leave failed (%s); putting {} instead", e)
            if not sent:
                with contextlib.suppress(DelayedEventError):
                    await self._retrying(
                        "leave",
                        lambda: self.delayed.put_state(
                            self.room_id, CALL_MEMBER_TYPE, self.state_key, {}
                        ),
                    )
            self.delay_id = None
            self.created_ts = None
            self.state = State.IDLE

    def on_own_state(self, content: dict[str, Any]) -> None:
        """Our state key changed in the room; if the membership vanished while we mean to stay
        (delayed leave fired after missed heartbeats, or someone overwrote it), join again."""
        if content or not self.want_joined or self.state != State.JOINED:
            return
        self.log.warning(
            "the bot's call membership in %s was removed; joining again", self.room_id
        )
        self.rejoins += 1
        self.state = State.JOINING
        self._rejoin_task = asyncio.ensure_future(self._rejoin())

    async def close(self) -> None:
        """Stop every task of this publisher (heartbeat, a pending rejoin); no request sent."""
        task, self._rejoin_task = self._rejoin_task, None
        if task and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._stop_heartbeat()

    async def _cancel_stale_leaves(self) -> None:
        """Delayed leaves for our state key that this process did not schedule: a previous
        process of the bot (killed, then restarted before its leave fired) left them pending.
        One of them would empty the membership this process is about to heartbeat; the server
        does not cancel a user's own delayed events when that user writes the state again."""
        if self.mode != LeaveMode.DELAYED:
            return
        try:
            pending = await self.delayed.list()
        except DelayedEventError as e:
            self.log.debug("could not list pending delayed events: %s", e)
            return
        for ev in pending:
            if (
                ev.get("room_id") == self.room_id
                and ev.get("type") == CALL_MEMBER_TYPE
                and ev.get("state_key") == self.state_key
                and ev.get("delay_id")
                and ev.get("delay_id") != self.delay_id
            ):
                with contextlib.suppress(DelayedEventError):
                    await self.delayed.cancel(str(ev["delay_id"]))
                    self.log.info("cancelled a stale delayed leave in %s", self.room_id)

    # -- join sequence -----------------------------------------------------------------------
    async def _join_sequence(self) -> None:
        self.last_error = None
        if self.mode == LeaveMode.DELAYED:
            self.state = State.SCHEDULING_LEAVE
            await self._schedule_delayed_leave()
        self.state = State.JOINING
        self.created_ts = None
        self.expiry_iteration = 1
        try:
            event_id = await self._send_membership()
        except DelayedEventError as e:
            self.state = State.FAILED
            self.last_error = str(e)
            raise PublishError(f"could not publish the call membership: {e}") from e
        self.join_event_id = event_id
        self.created_ts = await self._origin_ts(event_id)
        self.state = State.JOINED

    async def _schedule_delayed_leave(self) -> None:
        for _ in range(DELAY_TOO_LARGE.max_attempts):
            try:
                self.delay_id = await self._retrying(
                    "schedule delayed leave",
                    lambda: self.delayed.schedule_state(
                        self.room_id, CALL_MEMBER_TYPE, self.state_key, {}, self.delay_ms
                    ),
                )
                return
            except DelayTooLarge as e:
                lower = e.max_delay_ms or self.max_delay_ms
                if not lower or lower >= self.delay_ms:
                    break
                self.log.info(
                    "delay %d ms above the server's maximum; using %d ms", self.delay_ms, lower
                )
                self.delay_ms = lower
            except (DelayedEventsUnsupported, RequestRefused) as e:
                self._fall_back(f"the homeserver refused delayed events ({e})")
                return
            except DelayedEventError as e:
                self._fall_back(f"scheduling the delayed leave kept failing ({e})")
                return
        self._fall_back("the homeserver's maximum delay is unusable")

    def _fall_back(self, reason: str) -> None:
        self.log.warning("%s: falling back to an expiring membership", reason)
        self.mode = LeaveMode.EXPIRING
        self.fallback_reason = reason
        self.delay_id = None

    def _expires_ms(self) -> int:
        base = (
            self.settings.expires_ms
            if self.mode == LeaveMode.DELAYED
            else self.settings.fallback_expires_ms
        )
        return base * self.expiry_iteration

    def _expires_at_ms(self) -> int | None:
        if self.created_ts is None or self.state not in (State.JOINED, State.JOINING):
            return None
        return self.created_ts + self._expires_ms()

    async def _send_membership(self) -> str:
        content = session_content(
            user_id=self.user_id,
            device_id=self.device_id,
            expires_ms=self._expires_ms(),
            intent=self.intent,
            transports=self.foci_preferred,
            created_ts=self.created_ts,
        )
        return await self._retrying(
            "send membership",
            lambda: self.delayed.put_state(
                self.room_id, CALL_MEMBER_TYPE, self.state_key, content
            ),
        )

    async def _origin_ts(self, event_id: str) -> int:
        try:
            evt = await self.delayed.get_event(self.room_id, event_id)
            ts = evt.get("origin_server_ts")
            if isinstance(ts, int):
                return ts
        except DelayedEventError as e:
            self.log.debug("could not read back the join event: %s", e)
        return int(self.clock() * 1000)

    async def _rejoin(self) -> None:
        async with self._lock:
            if not self.want_joined:
                return
            await self._stop_heartbeat()
            # Our own delayed leave may still be pending (someone else emptied the state, or
            # a stale one fired): cancel it, or it would end the membership we put back.
            if self.delay_id:
                with contextlib.suppress(DelayedEventError):
                    await self.delayed.cancel(self.delay_id)
                self.delay_id = None
            await self._cancel_stale_leaves()
            try:
                await self._join_sequence()
            except PublishError as e:
                self.log.error("rejoining the call in %s failed: %s", self.room_id, e)
                return
            self._start_heartbeat()

    # -- heartbeat ---------------------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        self._task = asyncio.ensure_future(self._heartbeat())

    async def _stop_heartbeat(self) -> None:
        task, self._task = self._task, None
        if task and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _heartbeat(self) -> None:
        interval = self.settings.restart_interval_ms / 1000
        if self.mode == LeaveMode.EXPIRING:
            interval = min(interval, self.settings.fallback_expires_ms / 4000)
        while self.want_joined:
            try:
                if self.mode == LeaveMode.DELAYED:
                    await self._restart_delayed_leave()
                await self._refresh_expiry_if_due()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # keep the heartbeat alive whatever happens
                self.heartbeat_failures += 1
                self.last_error = str(e)
                self.log.warning("heartbeat in %s failed: %s", self.room_id, e)
            await asyncio.sleep(interval)

    async def _restart_delayed_leave(self) -> None:
        if self.delay_id is None:
            self.state = State.SCHEDULING_LEAVE
            await self._schedule_delayed_leave()
            self.state = State.JOINED
            return
        # Local timeout: an answer later than this is useless, the server would have fired.
        timeout = max(0.5, min(2.0, self.delay_ms / 4000))
        try:
            async with asyncio.timeout(timeout):
                await self.delayed.restart(self.delay_id)
            self.heartbeats_ok += 1
            self.last_heartbeat = self.clock()
        except DelayedEventNotFound:
            # Fired or cancelled: schedule anew while we still mean to be in the call.
            self.log.info("delayed leave in %s is gone; scheduling a new one", self.room_id)
            self.delay_id = None
            self.state = State.SCHEDULING_LEAVE
            await self._schedule_delayed_leave()
            # It fired (the bot was frozen or cut off longer than the delay): the membership is
            # gone too. Put it back here: the sync that shows it gone may have been handled
            # while this was still scheduling (on_own_state acts only when JOINED), and then
            # nothing else would (seen in a CI run: SIGSTOP, SIGCONT, no membership for 30 s).
            self.rejoins += 1
            await self._send_membership()
            self.state = State.JOINED
        except (TimeoutError, TransientError, RateLimited) as e:
            self.heartbeat_failures += 1
            if self.on_heartbeat_failure:
                self.on_heartbeat_failure()
            self.last_error = f"heartbeat: {e or 'timed out'}"

    async def _refresh_expiry_if_due(self) -> None:
        expires_at = self._expires_at_ms()
        if expires_at is None:
            return
        now_ms = int(self.clock() * 1000)
        headroom = min(EXPIRY_HEADROOM_MS, self._expires_ms() // 4)
        heartbeat_ms = self.settings.restart_interval_ms
        if now_ms + headroom + heartbeat_ms < expires_at:
            return
        # js-sdk: expires grows by one period each refresh; created_ts stays the original.
        self.expiry_iteration += 1
        await self._send_membership()
        self.log.debug(
            "refreshed membership in %s, now expires at +%d ms", self.room_id, self._expires_ms()
        )

    # -- retries -----------------------------------------------------------------------------
    async def _retrying(self, what: str, action: Callable[[], Any]) -> Any:
        attempts: dict[str, int] = {}
        while True:
            try:
                return await action()
            except RateLimited as e:
                policy, wait = RATE_LIMIT, (e.retry_after_ms or 0) / 1000 or RATE_LIMIT.wait_s
            except TransientError:
                policy, wait = NETWORK, NETWORK.wait_s
            n = attempts[policy.name] = attempts.get(policy.name, 0) + 1
            if n >= policy.max_attempts:
                raise TransientError(f"{what}: gave up after {n} {policy.name} retries")
            self.log.info(
                "%s in %s: %s retry %d in %.1f s", what, self.room_id, policy.name, n, wait
            )
            await asyncio.sleep(wait)
