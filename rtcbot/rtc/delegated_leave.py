"""Delegated delayed leave (MSC4140 + MSC4195): one job per (LiveKit room, identity), pure.

A client schedules its own delayed leave (a delayed `{}` for its call membership) and hands
the delay id to the authorization service. The service keeps that leave from firing (`restart`)
while the participant is connected to the SFU, and fires it (`send`) once the participant is
gone, so a crashed client leaves the call at once instead of after its own long delay.

    request ──► WAITING ──(joined webhook, or a poll finds it)──► CONNECTED
                  │  │                                              │ left / aborted webhook,
                  │  │ not connected after min(connect timeout,     │ a poll no longer finds it
                  │  │ delay) ──────────────────────────────────►  DISCONNECTED ──► sent
                  │  └ connection aborted ──► finished, nothing sent
    CONNECTED: restart at once, then every 80 % of the delay; 404 or no success before the
    homeserver's own deadline → finished, nothing sent (the homeserver fires it itself).
    A left/aborted webhook is confirmed REJOIN_GRACE_S later by a poll (a reconnecting client
    comes back under the same identity); the polls of CONNECTED decide.
    DISCONNECTED: send, retried until the homeserver's deadline (at least 1 s, at most 1 h);
    a 404 means it already fired or was sent or cancelled: done.
    After a restart of the plugin: a job past the homeserver's deadline is dropped unsent; a
    connected one is RESUMED: one poll decides between CONNECTED and DISCONNECTED (it may have
    left while nobody listened to the webhooks).

Modelled on lk-jwt-service's delayedEventManager (states, 80 %, 1 s × 1.5 up to 60 s, the 1 h
bounds). Time is passed in (wall-clock seconds, persisted across restarts); nothing here
sleeps, logs or does I/O: `start`/`resume`/`step` return the new job and the actions to run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final

from .leave_request import LeaveRequest

RESTART_FRACTION: Final = 0.8
# Below this the homeserver would be asked many times a second for a tiny delay.
MIN_RESTART_INTERVAL_S: Final = 0.5
# The send is retried until the homeserver's own deadline, within these bounds (lk-jwt's:
# at least one real attempt; never past the lifetime of a sticky membership).
MIN_SEND_WINDOW_S: Final = 1.0
MAX_SEND_WINDOW_S: Final = 3600.0
DEFAULT_CONNECT_TIMEOUT_S: Final = 3600.0
# A 429 without Retry-After / retry_after_ms.
RATE_LIMIT_WAIT_S: Final = 5.0
# After a participant_left of a connected participant, ask the SFU this much later before
# sending: Element Call reconnects with the same identity (a new session joins a moment after
# the old one left), and that must not end its membership.
REJOIN_GRACE_S: Final = 3.0


class Phase(StrEnum):
    WAITING = "waiting"  # for the participant's first connect
    RESUMED = "resumed"  # was connected before a restart of the plugin; one poll decides
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"  # sending the leave
    FINISHED = "finished"


class Outcome(StrEnum):
    """How a job ended (the metric's label)."""

    SENT = "sent"  # the leave was sent by us
    ALREADY_SENT = "already_sent"  # send → 404: it had fired, been sent or been cancelled
    SEND_FAILED = "send_failed"  # refused, or no success before the deadline
    RESTART_NOT_FOUND = "restart_not_found"  # the delayed leave is gone: nothing to keep
    RESTART_FAILED = "restart_failed"  # refused, or no restart before the deadline
    CONNECTION_ABORTED = "connection_aborted"  # the participant never got connected
    EXPIRED = "expired"  # found after a restart of the plugin, past its deadline
    REPLACED = "replaced"  # a new request for the same participant


class Result(StrEnum):
    """What the homeserver answered to a restart or a send."""

    OK = "ok"
    NOT_FOUND = "not_found"  # 404 M_NOT_FOUND
    RATE_LIMITED = "rate_limited"  # 429
    TRANSIENT = "transient"  # network error, timeout, 5xx, C-S API not found right now
    REFUSED = "refused"  # any other 4xx


@dataclass(frozen=True)
class Backoff:
    """A named retry policy: wait first_s, then × factor per attempt, at most max_s."""

    name: str
    first_s: float
    factor: float
    max_s: float

    def wait(self, attempt: int) -> float:
        return float(min(self.max_s, self.first_s * self.factor ** min(attempt, 64)))


POLL_UNTIL_CONNECTED = Backoff("poll-until-connected", 1.0, 1.5, 60.0)
RESTART_RETRY = Backoff("restart-retry", 1.0, 1.5, 60.0)
SEND_RETRY = Backoff("send-retry", 1.0, 1.5, 60.0)
RESUME_POLL_RETRY = Backoff("resume-poll-retry", 1.0, 1.5, 30.0)


@dataclass(frozen=True)
class Timings:
    """The configurable part (read from the config at every step)."""

    # WAITING ends (and the leave is sent) after min(this, delay) without a connect.
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    # While CONNECTED, ask the SFU this often whether the participant is still there (a lost
    # webhook would otherwise keep a ghost alive); 0 = webhooks only.
    check_interval_s: float = 30.0


class Op(StrEnum):
    POLL = "poll"  # ask the SFU whether the participant is connected
    RESTART = "restart"
    SEND = "send"


@dataclass(frozen=True)
class Run:
    """Run this operation and feed its result back (PollResult, RestartResult, SendResult)."""

    op: Op


@dataclass(frozen=True)
class Persist:
    """Store the job (its phase, last restart or participant changed)."""


@dataclass(frozen=True)
class Drop:
    """The job ended: forget it (and its row)."""

    outcome: Outcome
    reason: str


Action = Run | Persist | Drop


# -- inputs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tick:
    """Time passed (a timer of the job is due)."""


@dataclass(frozen=True)
class ParticipantJoined:
    sid: str = ""


@dataclass(frozen=True)
class ParticipantLeft:
    sid: str = ""
    aborted: bool = False  # participant_connection_aborted rather than participant_left


@dataclass(frozen=True)
class PollResult:
    present: bool | None  # None: the SFU could not be asked
    sid: str = ""


@dataclass(frozen=True)
class RestartResult:
    result: Result
    started_at: float  # when the request went out: the homeserver's timer restarted after it
    retry_after_s: float | None = None


@dataclass(frozen=True)
class SendResult:
    result: Result
    retry_after_s: float | None = None


Event = Tick | ParticipantJoined | ParticipantLeft | PollResult | RestartResult | SendResult


@dataclass(frozen=True)
class Job:
    request: LeaveRequest
    phase: Phase
    created_at: float
    # The last successful restart (the request, before one): the homeserver fires the leave
    # by itself at restarted_at + delay at the latest.
    restarted_at: float
    connect_by: float  # WAITING: send if not connected by then
    sid: str = ""  # the LiveKit participant sid, once known
    pending: Op | None = None  # the operation whose result is awaited
    poll_at: float | None = None
    poll_attempt: int = 0
    restart_at: float | None = None
    restart_attempt: int = 0
    restart_by: float = 0.0  # CONNECTED: a restart must succeed before this
    send_at: float | None = None
    send_attempt: int = 0
    send_by: float = 0.0
    confirm_at: float | None = None  # CONNECTED after a left webhook: poll then to confirm
    outcome: Outcome | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.request.key

    @property
    def deadline(self) -> float:
        """When the homeserver fires the leave by itself unless it is restarted."""
        return self.restarted_at + self.request.timeout_s

    @property
    def finished(self) -> bool:
        return self.phase is Phase.FINISHED

    def wake_at(self) -> float | None:
        """The next moment a Tick has something to do (None: only events can move it)."""
        if self.finished or self.pending is not None:
            return None
        times: list[float | None] = []
        if self.phase is Phase.WAITING:
            times = [self.poll_at, self.connect_by]
        elif self.phase is Phase.RESUMED:
            times = [self.poll_at, self.deadline]
        elif self.phase is Phase.CONNECTED:
            times = [self.restart_at, self.poll_at, self.confirm_at]
        elif self.phase is Phase.DISCONNECTED:
            times = [self.send_at]
        due = [t for t in times if t is not None]
        return min(due) if due else None


@dataclass(frozen=True)
class Transition:
    job: Job
    actions: tuple[Action, ...] = ()


# -- entry points --------------------------------------------------------------------------------
def start(request: LeaveRequest, now: float, timings: Timings = Timings()) -> Transition:
    """A new delegation: wait for the participant, asking the SFU at once (the client may have
    connected before it delegated, as Element Call does)."""
    job = Job(
        request=request,
        phase=Phase.WAITING,
        created_at=now,
        restarted_at=now,
        connect_by=now + min(timings.connect_timeout_s, request.timeout_s),
        poll_at=now,
    )
    return _fire_due(job, now, timings)


def resume(
    request: LeaveRequest,
    phase: Phase,
    created_at: float,
    restarted_at: float,
    sid: str,
    now: float,
    timings: Timings = Timings(),
) -> Transition:
    """A job read back after a restart of the plugin."""
    job = Job(
        request=request,
        phase=phase,
        created_at=created_at,
        restarted_at=restarted_at,
        connect_by=created_at + min(timings.connect_timeout_s, request.timeout_s),
        sid=sid,
    )
    if now >= job.deadline:
        return _finish(job, Outcome.EXPIRED, "the homeserver's deadline passed while stopped")
    if phase is Phase.DISCONNECTED:
        return _fire_due(_disconnect(job, now), now, timings)
    if phase in (Phase.CONNECTED, Phase.RESUMED):
        job = replace(job, phase=Phase.RESUMED)
    else:
        job = replace(job, phase=Phase.WAITING)
    return _fire_due(replace(job, poll_at=now), now, timings)


def step(job: Job, event: Event, now: float, timings: Timings = Timings()) -> Transition:
    """Apply one input; return the new job and what to do now."""
    if job.finished:
        return Transition(job)
    before = _persisted(job)
    moved = _apply(job, event, now, timings)
    due = _fire_due(moved.job, now, timings)
    actions = [*moved.actions, *due.actions]
    if not due.job.finished and _persisted(due.job) != before:
        actions.insert(0, Persist())
    return Transition(due.job, tuple(actions))


# -- transitions ---------------------------------------------------------------------------------
def _persisted(job: Job) -> tuple[Phase, float, str]:
    return (job.phase, job.restarted_at, job.sid)


def _finish(job: Job, outcome: Outcome, reason: str) -> Transition:
    done = replace(job, phase=Phase.FINISHED, pending=None, outcome=outcome)
    return Transition(done, (Drop(outcome, reason),))


def _connect(job: Job, sid: str, now: float, timings: Timings) -> Job:
    # The first restart at once: we do not know how long ago the client scheduled the leave.
    check = timings.check_interval_s
    return replace(
        job,
        phase=Phase.CONNECTED,
        sid=sid or job.sid,
        pending=None,
        restart_at=now,
        restart_attempt=0,
        restart_by=now + job.request.timeout_s,
        poll_at=now + check if check > 0 else None,
        poll_attempt=0,
    )


def _disconnect(job: Job, now: float) -> Job:
    window = min(MAX_SEND_WINDOW_S, max(MIN_SEND_WINDOW_S, job.deadline - now))
    return replace(
        job,
        phase=Phase.DISCONNECTED,
        pending=None,
        send_at=now,
        send_attempt=0,
        send_by=now + window,
        poll_at=None,
        restart_at=None,
    )


def _retry_wait(
    policy: Backoff, attempt: int, result: Result, retry_after_s: float | None
) -> float:
    """A 429 waits as long as the server asks (or RATE_LIMIT_WAIT_S); the rest back off."""
    if result is Result.RATE_LIMITED:
        return retry_after_s if retry_after_s is not None else RATE_LIMIT_WAIT_S
    return policy.wait(attempt)


def _apply(job: Job, event: Event, now: float, timings: Timings) -> Transition:
    phase = job.phase
    if isinstance(event, ParticipantJoined):
        if phase in (Phase.WAITING, Phase.RESUMED):
            return Transition(_connect(job, event.sid, now, timings))
        if phase is Phase.CONNECTED:
            # A newer session of the identity (a reconnect): no leave to confirm any more.
            return Transition(replace(job, sid=event.sid or job.sid, confirm_at=None))
        return Transition(job)
    if isinstance(event, ParticipantLeft):
        if phase is Phase.WAITING:
            if event.aborted:
                return _finish(job, Outcome.CONNECTION_ABORTED, "the connection was aborted")
            return Transition(job)  # not ours to judge yet: a poll or the timeout decides
        if phase in (Phase.CONNECTED, Phase.RESUMED):
            if job.sid and event.sid and event.sid != job.sid:
                return Transition(job)  # an older session of the same identity
            if phase is Phase.RESUMED:
                return Transition(_disconnect(job, now))
            return Transition(replace(job, confirm_at=now + REJOIN_GRACE_S))
        return Transition(job)
    if isinstance(event, PollResult):
        return _on_poll(job, event, now, timings)
    if isinstance(event, RestartResult):
        return _on_restart(job, event, now)
    if isinstance(event, SendResult):
        return _on_send(job, event, now)
    return Transition(job)  # Tick: _fire_due does the rest


def _on_poll(job: Job, event: PollResult, now: float, timings: Timings) -> Transition:
    if job.pending is not Op.POLL:
        return Transition(job)
    job = replace(job, pending=None)
    if job.phase is Phase.WAITING:
        if event.present:
            return Transition(_connect(job, event.sid, now, timings))
        wait = POLL_UNTIL_CONNECTED.wait(job.poll_attempt)
        return Transition(replace(job, poll_at=now + wait, poll_attempt=job.poll_attempt + 1))
    if job.phase is Phase.RESUMED:
        if event.present:
            return Transition(_connect(job, event.sid, now, timings))
        if event.present is False:
            return Transition(_disconnect(job, now))  # it left while nobody listened
        wait = RESUME_POLL_RETRY.wait(job.poll_attempt)
        return Transition(replace(job, poll_at=now + wait, poll_attempt=job.poll_attempt + 1))
    if job.phase is Phase.CONNECTED:
        if event.present is False:
            return Transition(_disconnect(job, now))  # the SFU says it is gone: a lost webhook
        if event.present and job.confirm_at is not None and event.sid and event.sid != job.sid:
            job = replace(job, confirm_at=None)  # it came back as a new session
        check = timings.check_interval_s
        sid = event.sid if event.present and event.sid else job.sid
        return Transition(replace(job, sid=sid, poll_at=now + check if check > 0 else None))
    return Transition(job)


def _on_restart(job: Job, event: RestartResult, now: float) -> Transition:
    if job.phase is not Phase.CONNECTED or job.pending is not Op.RESTART:
        return Transition(job)  # a late answer after the job moved on
    job = replace(job, pending=None)
    if event.result is Result.OK:
        interval = max(MIN_RESTART_INTERVAL_S, RESTART_FRACTION * job.request.timeout_s)
        return Transition(
            replace(
                job,
                restarted_at=event.started_at,
                restart_by=event.started_at + job.request.timeout_s,
                restart_at=event.started_at + interval,
                restart_attempt=0,
            )
        )
    if event.result is Result.NOT_FOUND:
        return _finish(job, Outcome.RESTART_NOT_FOUND, "the homeserver no longer knows the leave")
    if event.result is Result.REFUSED:
        return _finish(job, Outcome.RESTART_FAILED, "the homeserver refused the restart")
    wait = _retry_wait(RESTART_RETRY, job.restart_attempt, event.result, event.retry_after_s)
    if now + wait >= job.restart_by:
        return _finish(
            job, Outcome.RESTART_FAILED, f"no restart before the deadline ({event.result})"
        )
    return Transition(replace(job, restart_at=now + wait, restart_attempt=job.restart_attempt + 1))


def _on_send(job: Job, event: SendResult, now: float) -> Transition:
    if job.phase is not Phase.DISCONNECTED or job.pending is not Op.SEND:
        return Transition(job)
    job = replace(job, pending=None)
    if event.result is Result.OK:
        return _finish(job, Outcome.SENT, "the homeserver posted the leave")
    if event.result is Result.NOT_FOUND:
        return _finish(job, Outcome.ALREADY_SENT, "it had fired, been sent or been cancelled")
    if event.result is Result.REFUSED:
        return _finish(job, Outcome.SEND_FAILED, "the homeserver refused the send")
    wait = _retry_wait(SEND_RETRY, job.send_attempt, event.result, event.retry_after_s)
    if now + wait > job.send_by:
        return _finish(job, Outcome.SEND_FAILED, f"no send before the deadline ({event.result})")
    return Transition(replace(job, send_at=now + wait, send_attempt=job.send_attempt + 1))


def _fire_due(job: Job, now: float, timings: Timings) -> Transition:
    """Start the operation whose time has come (one at a time), or end the phase."""
    if job.finished or job.pending is not None:
        return Transition(job)
    if job.phase is Phase.WAITING:
        if now >= job.connect_by:
            return _fire_due(_disconnect(job, now), now, timings)  # never connected: send
        if job.poll_at is not None and now >= job.poll_at:
            return Transition(replace(job, pending=Op.POLL), (Run(Op.POLL),))
    elif job.phase is Phase.RESUMED:
        if now >= job.deadline:
            return _finish(job, Outcome.EXPIRED, "the SFU could not be asked before the deadline")
        if job.poll_at is not None and now >= job.poll_at:
            return Transition(replace(job, pending=Op.POLL), (Run(Op.POLL),))
    elif job.phase is Phase.CONNECTED:
        if job.confirm_at is not None and now >= job.confirm_at:  # before any restart
            return Transition(replace(job, pending=Op.POLL, confirm_at=None), (Run(Op.POLL),))
        if job.restart_at is not None and now >= job.restart_at:
            if now >= job.restart_by:
                return _finish(job, Outcome.RESTART_FAILED, "the deadline passed before a restart")
            return Transition(replace(job, pending=Op.RESTART), (Run(Op.RESTART),))
        if job.poll_at is not None and now >= job.poll_at:
            return Transition(replace(job, pending=Op.POLL), (Run(Op.POLL),))
    elif job.phase is Phase.DISCONNECTED and job.send_at is not None and now >= job.send_at:
        return Transition(replace(job, pending=Op.SEND), (Run(Op.SEND),))
    return Transition(job)
