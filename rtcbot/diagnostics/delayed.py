"""Delayed events (MSC4140), checklist 1–3: advertised with a usable maximum delay, and a real
schedule → restart → cancel round trip on a harmless state event of the bot's own."""

from __future__ import annotations

import contextlib
import time
from typing import Final, NamedTuple

from ..matrix.delayed_events import (
    DelayedEventError,
    DelayedEventNotFound,
    DelayedEventsUnsupported,
    DelayTooLarge,
    RateLimited,
    RequestRefused,
    TransientError,
)
from .probe import Probe, RunState, versions_and_caps
from .pure_checks import check_delayed_support
from .report import DELAYED, DELAYED_FIX, FAIL, OK, ROUND_TRIP, Check, fmt_ms

DIAG_EVENT_TYPE: Final = "dev.rtcbot.diag"
ROUND_TRIP_DELAY_MS: Final = 5000
RATE_LIMIT_FIX: Final = (
    "Raise `rc_message` and `rc_delayed_event_mgmt` in homeserver.yaml; Element Call "
    "recommends `rc_delayed_event_mgmt: {per_second: 1, burst_count: 20}` and "
    "`rc_message: {per_second: 0.5, burst_count: 30}`."
)


async def delayed_support(probe: Probe, run: RunState) -> None:
    info = await versions_and_caps(run, DELAYED)
    if info is not None:
        planned_ms = probe.ctx.settings().membership.delayed_leave_ms
        run.put(check_delayed_support(*info, planned_ms))


async def round_trip(probe: Probe, run: RunState) -> None:
    client = probe.ctx.client
    delayed = probe.delayed_events()
    key = f"_{client.mxid}_{client.device_id}_diag"
    details = [f"delayed `{{}}` on `{DIAG_EVENT_TYPE}` / `{key}`"]
    times: list[str] = []
    delay_ms = ROUND_TRIP_DELAY_MS
    delay_id: str | None = None
    step = "schedule"
    try:
        t = time.monotonic()
        try:
            delay_id = await delayed.schedule_state(
                run.room_id, DIAG_EVENT_TYPE, key, {}, delay_ms
            )
        except DelayTooLarge as e:
            if not e.max_delay_ms or e.max_delay_ms <= 0:
                raise
            delay_ms = e.max_delay_ms
            delay_id = await delayed.schedule_state(
                run.room_id, DIAG_EVENT_TYPE, key, {}, delay_ms
            )
        run.secrets.add(delay_id)  # a bearer capability: never shown
        times.append(f"schedule ({fmt_ms(delay_ms)}) {fmt_ms((time.monotonic() - t) * 1000)}")
        for step in ("restart", "cancel"):
            t = time.monotonic()
            await (delayed.restart if step == "restart" else delayed.cancel)(delay_id)
            times.append(f"{step} {fmt_ms((time.monotonic() - t) * 1000)}")
        delay_id = None
    except DelayedEventError as e:
        run.put(round_trip_failure(step, e, tuple([*details, *times])))
        return
    finally:
        if delay_id is not None:  # don't leave it to fire
            with contextlib.suppress(DelayedEventError):
                await delayed.cancel(delay_id)
    run.put(
        Check(
            ROUND_TRIP,
            OK,
            "schedule, restart and cancel work",
            details=(*details, "; ".join(times)),
        )
    )


class _Case(NamedTuple):
    error: type[DelayedEventError]
    step: str | None  # only at this step; None: at any
    summary: str  # may name {step}
    cause: str  # follows "the homeserver answered the <step>: <error>"
    fix: str


# The first case that matches the error (and step) explains the failure.
_FAILURES: Final = (
    _Case(
        DelayedEventsUnsupported,
        "schedule",
        "the homeserver refuses to schedule delayed events",
        " (delayed events are switched off).",
        DELAYED_FIX,
    ),
    _Case(
        DelayedEventsUnsupported,
        None,
        "scheduling works, but {step} is not found (M_UNRECOGNIZED)",
        ". With Synapse workers, `…/delayed_events/…/cancel` and `/send` must reach the main "
        "process.",
        "Route `^/_matrix/client/unstable/org.matrix.msc4140/delayed_events` to the main "
        "Synapse process in the reverse proxy.",
    ),
    _Case(RateLimited, None, "rate-limited at {step}", ".", RATE_LIMIT_FIX),
    _Case(
        DelayedEventNotFound,
        None,
        "the homeserver lost the scheduled event before the {step}",
        "; a load balancer may send management requests to another worker.",
        "Route delayed-event management to the main Synapse process.",
    ),
    _Case(
        TransientError,
        None,
        "no usable answer to the {step}",
        ".",
        "Check the homeserver's health and logs.",
    ),
    _Case(
        DelayTooLarge,
        None,
        "even a short delay is above the homeserver's maximum",
        ".",
        "Raise `max_event_delay_duration` in homeserver.yaml (24h is usual).",
    ),
)


def round_trip_failure(step: str, e: DelayedEventError, details: tuple[str, ...]) -> Check:
    said = f"the homeserver answered the {step}: {e}"
    for case in _FAILURES:
        if isinstance(e, case.error) and case.step in (None, step):
            return Check(
                ROUND_TRIP,
                FAIL,
                case.summary.format(step=step),
                cause=said + case.cause,
                fix=case.fix,
                details=details,
            )
    code = f" ({e.status} {e.errcode})" if isinstance(e, RequestRefused) else ""
    return Check(
        ROUND_TRIP,
        FAIL,
        f"the {step} was refused{code}",
        cause=said + ".",
        fix="Check the homeserver's logs for why it refused.",
        details=details,
    )
