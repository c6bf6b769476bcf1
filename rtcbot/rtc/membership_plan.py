"""The bot's own call membership as a pure planner, after matrix-js-sdk's MembershipManager.

One queue of actions, each due at a time: cancel stale leaves → schedule the delayed leave
(`{}` after `delay_ms`) → send the membership → restart the delayed leave every
`restart_interval_ms` (the heartbeat) → refresh `expires` before it runs out → on leave, send
the delayed leave now, else put `{}`. Where the homeserver has no usable delayed events the
membership carries a short `expires`, refreshed on time instead.

`step` takes the plan and what happened (a request from the bot, our membership removed, the
result of the action that ran) and returns the new plan; `next_action` says what to run now or
how long to wait. Nothing here sleeps or does I/O (matrix/publisher.py runs the actions). Each
request starts a new epoch: the result of an action from an older one (in flight when the bot
left, or when its membership was put back) changes nothing, so a removal seen late cannot
undo the membership sent after it, and a heartbeat cannot rejoin a call the bot left.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any


class Phase(StrEnum):
    IDLE = "not in the call"
    SCHEDULING_LEAVE = "scheduling the delayed leave"
    JOINING = "sending the membership"
    JOINED = "in the call"
    LEAVING = "leaving"
    FAILED = "failed"


class Mode(StrEnum):
    DELAYED = "delayed leave"
    EXPIRING = "expiring membership"


class Do(StrEnum):
    CANCEL_STALE = "cancel stale leaves"  # earlier processes' delayed leaves for our key
    CANCEL_OWN = "cancel our delayed leave"  # before putting a removed membership back
    SCHEDULE_LEAVE = "schedule the delayed leave"
    SEND_JOIN = "send the membership"
    REFRESH = "refresh the membership's expiry"
    RESTART_LEAVE = "restart the delayed leave"
    SEND_LEAVE = "send the delayed leave"
    PUT_LEAVE = "put an empty membership"


class Got(StrEnum):
    OK = "ok"
    NOT_FOUND = "not found"  # the delayed event fired, was sent or cancelled
    TOO_LARGE = "delay too large"
    UNSUPPORTED = "refused"  # no delayed events here, or the request is refused for good
    RATE_LIMITED = "rate limited"
    TRANSIENT = "transient"  # network, 5xx, a local timeout
    FAILED = "failed"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before retrying one kind of failure."""

    name: str
    max_attempts: int
    wait_ms: int


RATE_LIMIT = RetryPolicy("rate-limit", 10, 5_000)  # or the server's retry_after_ms
NETWORK = RetryPolicy("network", 10, 3_000)
# Synapse's text for the per-user cap of pending delayed events (storage/…/delayed_events.py).
CAP_TEXT = "maximum number of delayed events"
MAX_DELAY_TOO_LARGE = 3  # lower the delay at most this often before expiring memberships
EXPIRY_HEADROOM_MS = 5_000  # refresh the membership this long before it would expire


@dataclass(frozen=True)
class Timings:
    delayed_leave_ms: int
    restart_interval_ms: int
    expires_ms: int
    fallback_expires_ms: int


@dataclass(frozen=True)
class Action:
    do: Do
    at_ms: int
    epoch: int


# -- what happens ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Join:
    intent: str = "audio"


@dataclass(frozen=True)
class Leave:
    pass


@dataclass(frozen=True)
class Removed:
    """Our membership is gone from the room state (the delayed leave fired, or someone else
    wrote our key); `origin_ts` of the event that removed it, if known."""

    origin_ts: int | None = None


@dataclass(frozen=True)
class Result:
    action: Action
    got: Got
    delay_id: str | None = None  # SCHEDULE_LEAVE: the new delayed event
    origin_ts: int | None = None  # SEND_JOIN / REFRESH: the membership event's time
    max_delay_ms: int | None = None  # TOO_LARGE: what the server allows, if it said
    retry_after_ms: int | None = None  # RATE_LIMITED
    error: str = ""


Event = Join | Leave | Removed | Result


@dataclass(frozen=True)
class Plan:
    timings: Timings
    mode: Mode
    delay_ms: int
    max_delay_ms: int | None = None  # advertised; the server's refusal is what counts
    phase: Phase = Phase.IDLE
    want_joined: bool = False
    intent: str = "audio"
    epoch: int = 0
    queue: tuple[Action, ...] = ()
    delay_id: str | None = None
    created_ts: int | None = None  # first join of this membership (kept by refreshes)
    sent_ts: int | None = None  # the last membership event we sent
    expiry_iteration: int = 1
    attempts: Mapping[str, int] = field(default_factory=dict)
    too_large: int = 0
    fallback_reason: str | None = None
    last_error: str | None = None
    heartbeats_ok: int = 0
    heartbeat_failures: int = 0
    last_heartbeat_ms: int | None = None
    rejoins: int = 0

    def expires_ms(self) -> int:
        t = self.timings
        base = t.expires_ms if self.mode == Mode.DELAYED else t.fallback_expires_ms
        return base * self.expiry_iteration

    def expires_at_ms(self) -> int | None:
        if self.created_ts is None or self.phase not in (Phase.JOINED, Phase.JOINING):
            return None
        return self.created_ts + self.expires_ms()


def initial(timings: Timings, max_delay_ms: int | None, delayed_events_usable: bool) -> Plan:
    return Plan(
        timings,
        Mode.DELAYED if delayed_events_usable else Mode.EXPIRING,
        timings.delayed_leave_ms,
        max_delay_ms,
        fallback_reason=None
        if delayed_events_usable
        else "the homeserver does not offer delayed events",
    )


def next_action(plan: Plan, now_ms: int) -> tuple[Plan, Action | None, int | None]:
    """(plan without it, the action due now, None) or (plan, None, ms to wait; None: idle)."""
    if not plan.queue:
        return plan, None, None
    first = min(plan.queue, key=lambda a: a.at_ms)
    if first.at_ms > now_ms:
        return plan, None, first.at_ms - now_ms
    rest = tuple(a for a in plan.queue if a is not first)
    return replace(plan, queue=rest), first, None


def sent_expiry_ms(plan: Plan, action: Action) -> int:
    """The `expires` of the membership an action sends: a refresh adds one period (js-sdk;
    `created_ts` stays the first join's)."""
    t = plan.timings
    base = t.expires_ms if plan.mode == Mode.DELAYED else t.fallback_expires_ms
    return base * (plan.expiry_iteration + (1 if action.do == Do.REFRESH else 0))


def step(plan: Plan, event: Event, now_ms: int) -> Plan:
    if isinstance(event, Join):
        return _join(plan, event.intent, now_ms)
    if isinstance(event, Leave):
        return _leave(plan, now_ms)
    if isinstance(event, Removed):
        return _removed(plan, event, now_ms)
    if event.action.epoch != plan.epoch:
        return plan  # from before the last request: its world is gone
    return _result(plan, event, now_ms)


def stale_leaves(
    pending: list[dict[str, Any]], room_id: str, state_key: str, own: str | None, event_type: str
) -> list[str]:
    """Delay ids of delayed leaves for our key that this process did not schedule (a killed
    earlier process's): the server does not cancel them when we write the state again."""
    return [
        str(ev["delay_id"])
        for ev in pending
        if ev.get("room_id") == room_id
        and ev.get("type") == event_type
        and ev.get("state_key") == state_key
        and ev.get("delay_id")
        and ev.get("delay_id") != own
    ]


# -- requests --------------------------------------------------------------------------------
def _now(plan: Plan, now_ms: int, *dos: Do) -> tuple[Action, ...]:
    return tuple(Action(do, now_ms, plan.epoch) for do in dos)


def _enter(plan: Plan, now_ms: int, first: tuple[Do, ...] = ()) -> Plan:
    """Start (again) from scheduling the delayed leave, or from the membership when expiring."""
    plan = replace(
        plan, epoch=plan.epoch + 1, attempts={}, too_large=0, created_ts=None, expiry_iteration=1
    )
    if plan.mode == Mode.DELAYED:
        steps = (*first, Do.CANCEL_STALE, Do.SCHEDULE_LEAVE)
        return replace(plan, phase=Phase.SCHEDULING_LEAVE, queue=_now(plan, now_ms, *steps))
    return replace(plan, phase=Phase.JOINING, queue=_now(plan, now_ms, *first, Do.SEND_JOIN))


def _join(plan: Plan, intent: str, now_ms: int) -> Plan:
    plan = replace(plan, want_joined=True, intent=intent, last_error=None)
    if plan.phase == Phase.JOINED:  # already in: the membership again, with this intent
        plan = replace(plan, epoch=plan.epoch + 1, attempts={}, phase=Phase.JOINING)
        return replace(plan, queue=_now(plan, now_ms, Do.SEND_JOIN))
    if plan.phase in (Phase.IDLE, Phase.FAILED, Phase.LEAVING):
        return _enter(plan, now_ms)
    return plan  # on its way in already


def _leave(plan: Plan, now_ms: int) -> Plan:
    plan = replace(plan, want_joined=False, epoch=plan.epoch + 1, attempts={})
    if plan.phase in (Phase.IDLE, Phase.FAILED) and plan.delay_id is None:
        return replace(plan, phase=Phase.IDLE, queue=())
    first = Do.SEND_LEAVE if plan.delay_id else Do.PUT_LEAVE
    return replace(plan, phase=Phase.LEAVING, queue=_now(plan, now_ms, first))


def _removed(plan: Plan, event: Removed, now_ms: int) -> Plan:
    if not plan.want_joined or plan.phase != Phase.JOINED:
        return plan  # being put back already, or not meant to be there
    if event.origin_ts is not None and plan.sent_ts is not None and event.origin_ts < plan.sent_ts:
        return plan  # an old removal, seen after the membership was sent again
    # Our own delayed leave may still be pending (someone else emptied the state): cancel it,
    # or it would end the membership we put back.
    first = (Do.CANCEL_OWN,) if plan.delay_id else ()
    return _enter(replace(plan, rejoins=plan.rejoins + 1), now_ms, first)


# -- results ---------------------------------------------------------------------------------
def _retry(plan: Plan, r: Result, now_ms: int) -> Plan | None:
    """The same action again after the policy's wait, or None once the policy is spent."""
    if r.got == Got.RATE_LIMITED:
        policy, wait = RATE_LIMIT, r.retry_after_ms or RATE_LIMIT.wait_ms
    elif r.got == Got.TRANSIENT:
        policy, wait = NETWORK, NETWORK.wait_ms
    else:
        return None
    key = f"{r.action.do}:{policy.name}"
    n = plan.attempts.get(key, 0) + 1
    if n >= policy.max_attempts:
        return None
    again = Action(r.action.do, now_ms + wait, plan.epoch)
    return replace(plan, attempts={**plan.attempts, key: n}, queue=(*plan.queue, again))


def _result(plan: Plan, r: Result, now_ms: int) -> Plan:
    do = r.action.do
    if do in (Do.CANCEL_STALE, Do.CANCEL_OWN):
        return replace(plan, delay_id=None) if do == Do.CANCEL_OWN else plan
    if do == Do.SCHEDULE_LEAVE:
        return _scheduled(plan, r, now_ms)
    if do in (Do.SEND_JOIN, Do.REFRESH):
        return _sent(plan, r, now_ms)
    if do == Do.RESTART_LEAVE:
        return _restarted(plan, r, now_ms)
    return _left(plan, r, now_ms)


def _scheduled(plan: Plan, r: Result, now_ms: int) -> Plan:
    if r.got == Got.OK:
        plan = replace(plan, delay_id=r.delay_id, attempts={}, phase=Phase.JOINING)
        return replace(plan, queue=(*plan.queue, *_now(plan, now_ms, Do.SEND_JOIN)))
    if r.got == Got.TOO_LARGE:
        lower = r.max_delay_ms or plan.max_delay_ms
        if lower and lower < plan.delay_ms and plan.too_large < MAX_DELAY_TOO_LARGE - 1:
            plan = replace(plan, delay_ms=lower, too_large=plan.too_large + 1)
            return replace(plan, queue=(*plan.queue, *_now(plan, now_ms, Do.SCHEDULE_LEAVE)))
        return _fall_back(plan, "the homeserver's maximum delay is unusable", now_ms)
    if r.got == Got.RATE_LIMITED and (
        CAP_TEXT in r.error.lower() or (r.retry_after_ms or 0) > plan.delay_ms
    ):
        # Synapse's per-user cap (`msc4140_max_delayed_events_per_user`, capability
        # `max_scheduled`): 429 until the oldest pending delayed event fires, which may be
        # far off, or never while the bot keeps restarting its own leaves elsewhere.
        # Retrying blindly would leave the bot out of the call.
        return _fall_back(
            plan, "the homeserver's limit of pending delayed events for the bot is reached", now_ms
        )
    retried = _retry(plan, r, now_ms)
    if retried is not None:
        return retried
    if r.got == Got.UNSUPPORTED:
        return _fall_back(plan, f"the homeserver refused delayed events ({r.error})", now_ms)
    return _fall_back(plan, f"scheduling the delayed leave kept failing ({r.error})", now_ms)


def _fall_back(plan: Plan, reason: str, now_ms: int) -> Plan:
    plan = replace(plan, mode=Mode.EXPIRING, fallback_reason=reason, delay_id=None, attempts={})
    return replace(plan, phase=Phase.JOINING, queue=_now(plan, now_ms, Do.SEND_JOIN))


def _sent(plan: Plan, r: Result, now_ms: int) -> Plan:
    if r.got == Got.OK:
        ts = r.origin_ts if r.origin_ts is not None else now_ms
        created = plan.created_ts if plan.created_ts is not None else ts
        iteration = plan.expiry_iteration + (1 if r.action.do == Do.REFRESH else 0)
        plan = replace(
            plan,
            phase=Phase.JOINED,
            created_ts=created,
            sent_ts=ts,
            expiry_iteration=iteration,
            attempts={},
            last_error=None,
        )
        return _keep_alive(plan, now_ms)
    retried = _retry(plan, r, now_ms)
    if retried is not None:
        return retried
    if r.action.do == Do.REFRESH and plan.phase == Phase.JOINED:
        plan = replace(plan, heartbeat_failures=plan.heartbeat_failures + 1, last_error=r.error)
        retry = Action(Do.REFRESH, now_ms + plan.timings.restart_interval_ms, plan.epoch)
        return replace(plan, attempts={}, queue=(*plan.queue, retry))
    return replace(plan, phase=Phase.FAILED, last_error=r.error, queue=())


def _keep_alive(plan: Plan, now_ms: int) -> Plan:
    """What keeps a sent membership alive: the heartbeat, and the refresh before it expires."""
    t = plan.timings
    queue = tuple(a for a in plan.queue if a.do not in (Do.RESTART_LEAVE, Do.REFRESH))
    if plan.mode == Mode.DELAYED and plan.delay_id is not None:
        queue += (Action(Do.RESTART_LEAVE, now_ms + t.restart_interval_ms, plan.epoch),)
    expires_at = plan.expires_at_ms()
    if expires_at is not None:
        headroom = min(EXPIRY_HEADROOM_MS, plan.expires_ms() // 4)
        # Never sooner than one heartbeat from now: with a skewed clock (the server's time far
        # behind ours) every refresh would look overdue at once.
        due = max(now_ms + t.restart_interval_ms, expires_at - headroom - t.restart_interval_ms)
        queue += (Action(Do.REFRESH, due, plan.epoch),)
    return replace(plan, queue=queue)


def _restarted(plan: Plan, r: Result, now_ms: int) -> Plan:
    if r.got == Got.OK:
        plan = replace(plan, heartbeats_ok=plan.heartbeats_ok + 1, last_heartbeat_ms=now_ms)
    elif r.got == Got.NOT_FOUND:
        # It fired (the bot was frozen or cut off longer than the delay): the membership is
        # gone too, whatever the sync says and whenever it says it. Put both back.
        return _enter(replace(plan, delay_id=None, rejoins=plan.rejoins + 1), now_ms)
    else:
        failures = plan.heartbeat_failures + 1
        plan = replace(plan, heartbeat_failures=failures, last_error=f"heartbeat: {r.error}")
    beat = Action(Do.RESTART_LEAVE, now_ms + plan.timings.restart_interval_ms, plan.epoch)
    return replace(plan, queue=(*plan.queue, beat))


def _left(plan: Plan, r: Result, now_ms: int) -> Plan:
    if r.action.do == Do.SEND_LEAVE and r.got != Got.OK:
        return replace(plan, queue=_now(plan, now_ms, Do.PUT_LEAVE))  # `{}` by hand then
    if r.got != Got.OK and (retried := _retry(plan, r, now_ms)) is not None:
        return retried
    return replace(plan, phase=Phase.IDLE, delay_id=None, created_ts=None, sent_ts=None, queue=())
