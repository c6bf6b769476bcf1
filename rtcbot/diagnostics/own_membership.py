"""The bot's own seat, checklist 13–14 (and 17): the homeserver accepts the bot's state key,
and the bot's membership is what the bot believes it is (present, unexpired, with a healthy
delayed leave)."""

from __future__ import annotations

import time
from typing import Any

from mautrix.api import Method, Path
from mautrix.errors import MatrixRequestError
from mautrix.types import RoomID

from ..matrix.delayed_events import DelayedEventError, RequestRefused
from ..matrix.publisher import LeaveMode, PublisherStatus, State
from ..rtc.membership import CALL_MEMBER_TYPE, Membership, parse_state_event
from ..rtc.state_keys import make_state_key
from .probe import Probe, RunState
from .report import (
    CLOCK_FIX,
    DELAYED_FIX,
    FAIL,
    OK,
    OWN_MEMBERSHIP,
    SKIP,
    STATE_KEY,
    WARN,
    Check,
    fmt_ms,
)


async def own_key_and_membership(probe: Probe, run: RunState) -> None:
    key = make_state_key(probe.ctx.client.mxid, probe.ctx.device_id)
    cmd = f"!{probe.ctx.settings().command}"  # the command word as this instance has it
    pub = probe.calls.publisher(run.room_id)
    in_call = pub is not None and pub.state not in (State.IDLE, State.FAILED)
    event = await _own_state(probe, run.room_id, key)
    parsed = parse_state_event(event) if event else None

    if in_call:
        assert pub is not None
        st = pub.status()
        if parsed is None or not parsed.ok:
            why = "absent" if parsed is None or parsed.left else f"unreadable ({parsed.reason})"
            run.put(
                Check(
                    STATE_KEY,
                    WARN,
                    f"the bot's key `{key}` holds no membership",
                    cause="See the next line.",
                )
            )
            run.put(
                Check(
                    OWN_MEMBERSHIP,
                    FAIL,
                    f"the bot is {st.state.value}, but its membership is {why} in the room state",
                    cause="Someone overwrote it, or the delayed leave fired after missed "
                    "heartbeats; the bot rejoins by itself.",
                    fix=f"If this repeats, look at the heartbeat errors in `{cmd} status` "
                    "and the rate limits (`rc_delayed_event_mgmt`).",
                    details=(f"last error: {st.last_error}",) if st.last_error else (),
                )
            )
            return
        run.put(Check(STATE_KEY, OK, f"the bot's key `{key}` holds its membership"))
        run.put(_own_membership(parsed.memberships[0], st))
        return

    if parsed is not None and parsed.ok:
        run.put(
            Check(
                STATE_KEY,
                OK,
                f"the bot's key `{key}` holds an earlier membership of the bot",
            )
        )
        m = parsed.memberships[0]
        expired = m.is_expired(int(time.time() * 1000))
        run.put(
            Check(
                OWN_MEMBERSHIP,
                WARN,
                "the bot is not in the call, but an old membership of it is in the room state"
                + (" (expired)" if expired else ""),
                cause="Left over from a run that ended without leaving (crash without "
                "delayed events).",
                fix=f"`{cmd} join` then `{cmd} leave` clears it; clients ignore it once it "
                "has expired.",
            )
        )
        return
    # Not in a call: prove the key is accepted by writing "not in the call" (`{}`) to it.
    try:
        delayed = probe.delayed_events()
        await delayed.put_state(run.room_id, CALL_MEMBER_TYPE, key, {})
    except DelayedEventError as e:
        run.put(_state_key_failure(key, e))
    else:
        run.put(
            Check(
                STATE_KEY,
                OK,
                f"the homeserver accepts the bot's key `{key}`",
                details=("wrote `{}` (not in the call) to it",),
            )
        )
    run.put(
        Check(
            OWN_MEMBERSHIP,
            SKIP,
            f"the bot is not in a call here (`{cmd} join` first to check it)",
        )
    )


async def _own_state(probe: Probe, room_id: RoomID, key: str) -> dict[str, Any] | None:
    try:
        evt = await probe.matrix(
            Method.GET,
            Path.v3.rooms[room_id].state[CALL_MEMBER_TYPE][key],
            query={"format": "event"},
        )
    except MatrixRequestError as e:
        if e.http_status == 404:
            return None
        raise
    if not isinstance(evt, dict):
        return None
    if "content" in evt and "type" in evt:
        return evt
    # A server that ignores format=event answers with the content alone.
    return {
        "type": CALL_MEMBER_TYPE,
        "state_key": key,
        "sender": probe.ctx.client.mxid,
        "content": evt,
        "origin_server_ts": int(time.time() * 1000),
    }


def _state_key_failure(key: str, e: DelayedEventError) -> Check:
    said = f"The homeserver answered: {e}"
    if isinstance(e, RequestRefused) and e.status == 403 and "level" in str(e):
        return Check(
            STATE_KEY,
            FAIL,
            f"the bot may not write its key `{key}`: its power level is too low",
            cause=f"{said}.",
            fix="See the bot's call permission line above.",
        )
    if isinstance(e, RequestRefused) and e.status == 403:
        return Check(
            STATE_KEY,
            FAIL,
            f"the homeserver treats `{key}` as someone else's state key",
            cause=f"{said}. This room version does not let users own `_@user_…` keys.",
            fix="Upgrade the room to a current room version.",
        )
    if isinstance(e, RequestRefused) and e.status == 400:
        return Check(
            STATE_KEY,
            FAIL,
            f"the homeserver rejects the key `{key}` as malformed",
            cause=f"{said}. In MSC3757 rooms owned keys must be `@user:server_…` exactly.",
            fix="Report this with the room version to rtcbot's developers.",
        )
    return Check(
        STATE_KEY,
        FAIL,
        f"writing `{key}` failed",
        cause=f"{said}.",
        fix="Check the homeserver's logs.",
    )


def _own_membership(m: Membership, st: PublisherStatus) -> Check:
    now = int(time.time() * 1000)
    details = [
        f"state {st.state.value}, mode {st.mode.value if st.mode else '-'}",
        f"heartbeats: {st.heartbeats_ok} ok, {st.heartbeat_failures} failed; rejoins {st.rejoins}",
    ]
    if st.last_error:
        details.append(f"last error: {st.last_error}")
    if m.is_expired(now):
        return Check(
            OWN_MEMBERSHIP,
            FAIL,
            "the bot's membership is in the room state but already expired",
            cause="Its `expires` is counted from `created_ts`; a clock difference between "
            "the bot and the homeserver or a wrong `created_ts` makes it look expired.",
            fix=CLOCK_FIX,
            details=tuple(details),
        )
    left = f"expires in {fmt_ms(m.expires_at - now)}" if m.expires_at else "no expiry"
    if st.mode == LeaveMode.EXPIRING:
        return Check(
            OWN_MEMBERSHIP,
            WARN,
            f"visible ({left}), but without a delayed leave",
            cause=f"{st.fallback_reason or 'no delayed events'}: if the bot crashes, it stays "
            "in the call as a ghost until the membership expires.",
            fix=DELAYED_FIX,
            details=tuple(details),
        )
    if not st.has_delayed_leave or (st.heartbeat_failures and st.last_error):
        return Check(
            OWN_MEMBERSHIP,
            WARN,
            f"visible ({left}), but the delayed-leave heartbeat is unhealthy",
            cause=st.last_error or "the delayed leave is missing",
            fix="Check rate limits (`rc_delayed_event_mgmt`) and the homeserver's load.",
            details=tuple(details),
        )
    return Check(
        OWN_MEMBERSHIP,
        OK,
        f"visible, {left}; delayed leave {fmt_ms(st.delay_ms or 0)}, "
        f"{st.heartbeats_ok} heartbeat{'' if st.heartbeats_ok == 1 else 's'} ok",
        details=tuple(details),
    )
