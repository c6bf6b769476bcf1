"""Delegated delayed leaves: the authorization service's jobs, run and kept across restarts.

The pure state machine (rtc/delegated_leave.py) decides; this runs it. One task per job
(`ctx.tasks`), fed by LiveKit's webhooks (auth/web.py → `on_participant`), by the SFU
(`GetParticipant`), by the homeserver (restart / send, matrix/delayed_actions.py) and by the
clock. Each job is a row in the plugin DB from before the client gets its answer until the
job ends, so a restart of the plugin resumes it (`start`), as lk-jwt-service does with Redis.

The C-S API is found from the server that vouched for the user (matrix/client_discovery.py),
never from the request. Those lookups, restarts and sends go out on a client of their own
(net/outbound.py: a small pool, no private address but the bot's own homeserver and the
configured `client_api_urls`), never on the Matrix client's connections. A delay id is a capability: logs name a job by its participant and a
fingerprint of the id (`delay #1a2b3c4d`), never by the id.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from livekit import api

from ..auth.settings import AuthServiceSettings
from ..context import BotContext
from ..matrix.client_discovery import ClientApiDiscovery, ClientApiUnresolvable
from ..matrix.delayed_actions import ActionAnswer, delayed_event_action
from ..net.outbound import anonymous_callers_client, authority_of, sfu_api_client
from ..rtc.delegated_leave import (
    MIN_RESTART_INTERVAL_S,
    RESTART_FRACTION,
    Action,
    Drop,
    Event,
    Job,
    Op,
    ParticipantJoined,
    ParticipantLeft,
    Persist,
    Phase,
    PollResult,
    RestartResult,
    Result,
    Run,
    SendResult,
    Tick,
    Timings,
    Transition,
    resume,
    start,
    step,
)
from ..rtc.leave_request import DelegationRefused, LeaveRequest
from ..rtc.rate_limit import FairBudget
from ..tasks import cancel_and_wait
from .requests import printable
from .store import DelegatedLeaveStore, StoredLeave

# A full-access user could otherwise make the bot keep any number of jobs (one per device,
# membership and room).
MAX_JOBS_PER_USER = 20
MAX_JOBS = 10_000
SFU_TIMEOUT_S = 5.0
HOMESERVER_TIMEOUT_S = 5.0
# On stop, connected participants get one last restart (their homeserver timers start afresh,
# so a quick restart of the plugin costs nothing); it may take this long in total.
STOP_RESTART_GRACE_S = 2.0
# Synapse's default rc_delayed_event_mgmt is 1/s with a burst of 5: the budget's burst keeps
# that ratio to its rate.
BUDGET_BURST_SECONDS = 5.0
WEBHOOK_EVENTS = ("participant_joined", "participant_left", "participant_connection_aborted")


def fingerprint(delay_id: str) -> str:
    """How a delay id appears in logs: enough to tell two apart, nothing to use."""
    return "delay #" + hashlib.sha256(delay_id.encode("utf-8", "surrogatepass")).hexdigest()[:8]


class SfuUnavailable(Exception):
    """The SFU could not be asked (network error, timeout, not configured)."""


class ParticipantLookup:
    """Is this identity connected to this LiveKit room? (RoomService.GetParticipant)"""

    def __init__(
        self,
        settings: Callable[[], AuthServiceSettings],
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._settings = settings
        # None: a session of its own (net/outbound.py): anonymous callers' delegations cause
        # these lookups, so they must not hold the Matrix client's connections.
        self._own = sfu_api_client(lambda: settings().livekit_url)
        self._session = session

    async def close(self) -> None:
        await self._own.close()

    async def sid(self, room: str, identity: str) -> str | None:
        """The participant's sid, None when the SFU does not know it; raise SfuUnavailable."""
        s = self._settings()
        if not (s.livekit_url and s.api_key and s.api_secret):
            raise SfuUnavailable("no LiveKit URL or API key in auth_service")
        http = self._session or self._own.session()
        lk = api.LiveKitAPI(s.livekit_url, s.api_key, s.api_secret, session=http, failover=False)
        try:
            async with asyncio.timeout(SFU_TIMEOUT_S):
                info = await lk.room.get_participant(
                    api.RoomParticipantIdentity(room=room, identity=identity)
                )
        except api.ServerError as e:
            if e.code == "not_found":
                return None
            raise SfuUnavailable(f"{e.status} {e.code}") from None
        except Exception as e:  # network, timeout, a bad URL: the text may carry the URL only
            raise SfuUnavailable(type(e).__name__) from None
        finally:
            await lk.aclose()
        if info.state == api.ParticipantInfo.State.DISCONNECTED:
            return None
        return info.sid or "?"


@dataclass
class _Runner:
    job: Job
    queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[Any] | None = None


class DelegatedLeaves:
    def __init__(
        self,
        ctx: BotContext,
        *,
        cs_api: ClientApiDiscovery | None = None,
        sfu: ParticipantLookup | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ctx = ctx
        self.log = ctx.logger("delegated_leave")
        self.store = DelegatedLeaveStore(ctx.db.db)
        self.clock = clock
        self.outbound = anonymous_callers_client(self._trusted_hosts, timeout=HOMESERVER_TIMEOUT_S)
        self.cs_api = cs_api or ClientApiDiscovery(
            self.outbound,
            lambda: ctx.settings().auth_service.client_api_urls,
            own_server=ctx.user_id.partition(":")[2],
            own_url=lambda: str(ctx.client.api.base_url),
        )
        self.sfu = sfu or ParticipantLookup(lambda: ctx.settings().auth_service)
        self._runners: dict[tuple[str, str], _Runner] = {}
        self._lock = asyncio.Lock()
        self._accepting = False
        self._budget: FairBudget | None = None

    def _trusted_hosts(self) -> list[str]:
        urls = [str(self.ctx.client.api.base_url)]
        urls += self.ctx.settings().auth_service.client_api_urls.values()
        return [authority_of(u) for u in urls if u]

    def budget(self) -> FairBudget:
        """Restarts and sends of every job share the homeserver's per-IP budget (they go out
        unauthenticated): a global rate, a fair share per user (rtc/rate_limit.py)."""
        rate = self.ctx.settings().auth_service.delegated_leave_budget_per_s
        if self._budget is None or self._budget.rate != rate:
            self._budget = FairBudget(rate, max(1.0, rate * BUDGET_BURST_SECONDS))
        return self._budget

    def timings(self) -> Timings:
        s = self.ctx.settings().auth_service
        return Timings(
            connect_timeout_s=s.delegated_leave_connect_timeout_s,
            check_interval_s=s.delegated_leave_check_s,
        )

    def live_metrics(self) -> dict[str, float]:
        return {"rtcbot_delegated_leaves_pending": float(len(self._runners))}

    def _name(self, request: LeaveRequest) -> str:
        return (
            f"{printable(request.identity)} in {request.room_id} (LiveKit room "
            f"{printable(request.livekit_room)}, {fingerprint(request.delay_id)})"
        )

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Resume the jobs of the DB; drop those whose leave the homeserver has fired by now."""
        self._accepting = True
        rows = await self.store.all()
        now = self.clock()
        resumed = dropped = 0
        for row in rows:
            if row.request.key in self._runners:
                continue
            try:
                phase = Phase(row.phase)
            except ValueError:
                phase = Phase.WAITING
            t = resume(
                row.request,
                phase,
                row.created_ms / 1000,
                row.restarted_ms / 1000,
                row.sid,
                now,
                self.timings(),
            )
            if t.job.finished:
                dropped += 1
                await self._execute(t.job, list(t.actions))
            else:
                resumed += 1
                self._launch(t)
        if rows:
            self.log.info(
                "Delegated leaves: resumed %d, dropped %d whose deadline passed while stopped",
                resumed,
                dropped,
            )

    async def stop(self) -> None:
        """End the tasks; the jobs stay in the DB for the next start."""
        self._accepting = False
        runners = list(self._runners.values())
        self._runners.clear()
        for runner in runners:
            if runner.task is not None:
                runner.task.cancel()
        for runner in runners:
            if runner.task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await runner.task
        connected = [r.job for r in runners if r.job.phase is Phase.CONNECTED]
        if connected:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_RESTART_GRACE_S):
                    await asyncio.gather(*(self._last_restart(job) for job in connected))
        await self.outbound.close()
        await self.sfu.close()
        self.log.info("Delegated leaves: %d kept in the database for the next start", len(runners))

    async def _last_restart(self, job: Job) -> None:
        started = self.clock()
        answer = await self._homeserver(job.request, "restart")
        if answer.result is Result.OK:
            with contextlib.suppress(Exception):
                await self.store.update(job.request, job.phase.value, _ms(started), job.sid)

    # -- inputs --------------------------------------------------------------------------------
    async def delegate(self, request: LeaveRequest) -> None:
        """Take a verified delegation: stored before this returns (then the client is told
        200), run in the background. Raise DelegationRefused."""
        if not self._accepting:
            raise DelegationRefused("unavailable", "the plugin is stopping")
        try:
            await self.cs_api.base_url(request.server_name)
        except ClientApiUnresolvable as e:
            raise DelegationRefused("unresolvable", f"{request.server_name}: {e}") from None
        # A client that hangs up must not cut this in half (a row without a task, or a task
        # replaced without a new one).
        await asyncio.shield(self._take(request))

    async def _take(self, request: LeaveRequest) -> None:
        async with self._lock:
            old = self._runners.get(request.key)
            if old is not None and old.job.request == request:
                return  # the same handover again (a token refresh): the job runs on
            if old is None:
                mine = sum(
                    1 for r in self._runners.values() if r.job.request.user_id == request.user_id
                )
                if mine >= MAX_JOBS_PER_USER or len(self._runners) >= MAX_JOBS:
                    raise DelegationRefused("too_many", f"{request.user_id} has {mine} already")
            else:
                await self._replace(old)
            now = self.clock()
            t = start(request, now, self.timings())
            try:
                row = StoredLeave(request, t.job.phase.value, _ms(now), _ms(now), "")
                await self.store.save(row)
            except Exception as e:
                raise DelegationRefused(
                    "unavailable", f"storing it failed: {type(e).__name__}"
                ) from None
            self._launch(t)
        self.log.info(
            "Delegated leave of %s: waiting for it on the SFU (delay %d ms)",
            self._name(request),
            request.delay_timeout_ms,
        )

    def on_participant(self, event: str, room: str, identity: str, sid: str) -> None:
        """A verified LiveKit webhook about a participant (participant_joined, _left,
        _connection_aborted)."""
        runner = self._runners.get((room, identity))
        if runner is None or event not in WEBHOOK_EVENTS:
            return
        if event == "participant_joined":
            runner.queue.put_nowait(ParticipantJoined(sid))
        else:
            aborted = event == "participant_connection_aborted"
            runner.queue.put_nowait(ParticipantLeft(sid, aborted=aborted))

    # -- running a job -------------------------------------------------------------------------
    def _launch(self, first: Transition) -> None:
        if not self._accepting:  # stop() ran meanwhile; the row stays for the next start
            return
        runner = _Runner(first.job)
        self._runners[first.job.key] = runner
        runner.task = self.ctx.tasks.spawn(self._run(runner, first), "delegated-leave")
        if runner.task is None:  # the plugin is stopping; the row stays for the next start
            del self._runners[first.job.key]

    async def _replace(self, old: _Runner) -> None:
        await cancel_and_wait(old.task)
        self._runners.pop(old.job.key, None)
        self.ctx.metrics.delegated_leaves.labels("replaced").inc()
        self.log.info("Delegated leave of %s: replaced by a new one", self._name(old.job.request))

    async def _run(self, runner: _Runner, first: Transition) -> None:
        job, actions = first.job, list(first.actions)
        try:
            while True:
                job = await self._execute(job, actions)
                runner.job = job
                if job.finished:
                    return
                wake = job.wake_at()
                timeout = None if wake is None else max(0.0, wake - self.clock())
                event: Event
                try:
                    event = await asyncio.wait_for(runner.queue.get(), timeout)
                except TimeoutError:
                    event = Tick()
                before = job.phase
                t = step(job, event, self.clock(), self.timings())
                job, actions = t.job, list(t.actions)
                if job.phase is not before and not job.finished:
                    self._log_phase(job)
        finally:
            if self._runners.get(job.key) is runner:
                del self._runners[job.key]

    async def _execute(self, job: Job, actions: list[Action]) -> Job:
        """Run the actions in order; an operation's result is fed back at once."""
        while actions:
            action = actions.pop(0)
            if isinstance(action, Persist):
                try:
                    await self.store.update(
                        job.request, job.phase.value, _ms(job.restarted_at), job.sid
                    )
                except Exception as e:  # the job goes on; a restart would resume an older row
                    self.log.warning("Delegated leave: storing failed: %s", type(e).__name__)
            elif isinstance(action, Drop):
                await self._drop(job, action)
            elif isinstance(action, Run):
                before = job.phase
                t = step(job, await self._operate(job, action.op), self.clock(), self.timings())
                job = t.job
                actions[:0] = t.actions
                if job.phase is not before and not job.finished:
                    self._log_phase(job)
        return job

    async def _operate(self, job: Job, op: Op) -> Event:
        request = job.request
        if op is Op.POLL:
            try:
                sid = await self.sfu.sid(request.livekit_room, request.identity)
            except SfuUnavailable as e:
                self.log.debug("Delegated leave: SFU lookup failed: %s", e)
                return PollResult(None)
            return PollResult(sid is not None, sid or "")
        started = self.clock()
        wait = self.budget().take(request.user_id, started)
        if wait > 0:  # over the budget or the user's share: as a 429 of our own
            self.log.debug(
                "Delegated leave of %s: %s waits %.1f s for the budget",
                self._name(request),
                op,
                wait,
            )
            if op is Op.RESTART:
                return RestartResult(Result.RATE_LIMITED, started, wait)
            return SendResult(Result.RATE_LIMITED, wait)
        answer = await self._homeserver(request, "restart" if op is Op.RESTART else "send")
        if answer.result is not Result.OK:
            self.log.info(
                "Delegated leave of %s: %s answered %s (%s)",
                self._name(request),
                op,
                answer.result,
                answer.detail,
            )
        if op is Op.RESTART:
            return RestartResult(answer.result, started, answer.retry_after_s)
        return SendResult(answer.result, answer.retry_after_s)

    async def _homeserver(self, request: LeaveRequest, action: str) -> ActionAnswer:
        try:
            base = await self.cs_api.base_url(request.server_name)
        except ClientApiUnresolvable as e:
            return ActionAnswer(Result.TRANSIENT, detail=f"C-S API unresolvable: {e}")
        return await delayed_event_action(
            self.outbound, base, request.delay_id, action, HOMESERVER_TIMEOUT_S
        )

    async def _drop(self, job: Job, drop: Drop) -> None:
        with contextlib.suppress(Exception):
            await self.store.delete(job.request)
        self.ctx.metrics.delegated_leaves.labels(drop.outcome.value).inc()
        self.log.info(
            "Delegated leave of %s ended: %s (%s)",
            self._name(job.request),
            drop.outcome,
            drop.reason,
        )

    def _log_phase(self, job: Job) -> None:
        if job.phase is Phase.CONNECTED:
            every = max(MIN_RESTART_INTERVAL_S, RESTART_FRACTION * job.request.timeout_s)
            what = f"connected, restarting its leave every {every:g} s"
        elif job.phase is Phase.DISCONNECTED:
            what = "gone from the SFU (or never came): sending its leave"
        else:
            what = str(job.phase)
        self.log.info("Delegated leave of %s: %s", self._name(job.request), what)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
