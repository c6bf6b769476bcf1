"""The bot's own membership as a pure planner, on a fake clock (milliseconds passed in)."""

from __future__ import annotations

from dataclasses import replace

from rtcbot.rtc.membership_plan import (
    Do,
    Got,
    Join,
    Leave,
    Mode,
    Phase,
    Plan,
    Removed,
    Result,
    Timings,
    initial,
    next_action,
    sent_expiry_ms,
    stale_leaves,
    step,
)

T0 = 1_760_000_000_000
TIMINGS = Timings(
    delayed_leave_ms=8_000,
    restart_interval_ms=4_000,
    expires_ms=14_400_000,
    fallback_expires_ms=60_000,
)


def take(plan: Plan, now: int, expected: Do) -> tuple[Plan, Result]:
    """Pop the due action; it must be `expected`. Returns the plan and an OK result for it."""
    plan, action, wait = next_action(plan, now)
    assert action is not None, f"nothing due at +{now - T0} ms (next in {wait} ms)"
    assert action.do == expected, (action.do, expected)
    return plan, Result(action, Got.OK)


def done(plan: Plan, now: int, expected: Do) -> Plan:
    """Run the due action `expected`, which succeeds."""
    plan, ok = take(plan, now, expected)
    return step(plan, ok, now)


def joined(plan: Plan | None = None, now: int = T0) -> Plan:
    plan = step(plan or initial(TIMINGS, None, True), Join("audio"), now)
    plan, ok = take(plan, now, Do.CANCEL_STALE)
    plan = step(plan, ok, now)
    plan, ok = take(plan, now, Do.SCHEDULE_LEAVE)
    plan = step(plan, replace(ok, delay_id="d1"), now)
    plan, ok = take(plan, now, Do.SEND_JOIN)
    return step(plan, replace(ok, origin_ts=now + 5), now)


def test_join_schedules_the_leave_before_the_membership_and_then_beats() -> None:
    plan = joined()
    assert plan.phase == Phase.JOINED and plan.delay_id == "d1"
    assert plan.created_ts == T0 + 5 and plan.mode == Mode.DELAYED
    assert next_action(plan, T0 + 3_999)[1] is None  # nothing before the interval
    beats = plan
    for n in range(1, 4):
        now = T0 + 4_000 * n
        beats, ok = take(beats, now, Do.RESTART_LEAVE)
        beats = step(beats, ok, now)
    assert beats.heartbeats_ok == 3 and beats.last_heartbeat_ms == T0 + 12_000


def test_a_failed_heartbeat_is_counted_and_the_next_one_still_comes() -> None:
    plan = joined()
    plan, ok = take(plan, T0 + 4_000, Do.RESTART_LEAVE)
    plan = step(plan, replace(ok, got=Got.TRANSIENT, error="timed out"), T0 + 4_000)
    assert plan.heartbeat_failures == 1 and plan.last_error == "heartbeat: timed out"
    plan, _ = take(plan, T0 + 8_000, Do.RESTART_LEAVE)


def test_a_removed_membership_is_put_back_with_our_leave_cancelled_first() -> None:
    plan = joined()
    plan = step(plan, Removed(origin_ts=T0 + 1_000), T0 + 1_000)
    assert plan.rejoins == 1 and plan.phase == Phase.SCHEDULING_LEAVE
    order = []
    now = T0 + 1_000
    for expected in (Do.CANCEL_OWN, Do.CANCEL_STALE, Do.SCHEDULE_LEAVE):
        plan, ok = take(plan, now, expected)
        order.append(expected)
        plan = step(plan, replace(ok, delay_id="d2") if expected == Do.SCHEDULE_LEAVE else ok, now)
    plan, ok = take(plan, now, Do.SEND_JOIN)
    plan = step(plan, replace(ok, origin_ts=now + 3), now)
    assert plan.phase == Phase.JOINED and plan.delay_id == "d2" and plan.created_ts == now + 3


def test_an_old_removal_seen_after_the_membership_was_sent_again_changes_nothing() -> None:
    plan = joined(now=T0 + 10_000)  # our latest membership event: T0 + 10 005
    assert step(plan, Removed(origin_ts=T0 + 9_000), T0 + 11_000) == plan
    assert step(plan, Removed(origin_ts=T0 + 20_000), T0 + 20_000).rejoins == 1


def test_delay_too_large_lowers_the_delay_then_falls_back_to_expiry() -> None:
    plan = step(initial(TIMINGS, None, True), Join("video"), T0)
    plan = done(plan, T0, Do.CANCEL_STALE)
    plan, ok = take(plan, T0, Do.SCHEDULE_LEAVE)
    plan = step(plan, replace(ok, got=Got.TOO_LARGE, max_delay_ms=5_000), T0)
    assert plan.delay_ms == 5_000 and plan.mode == Mode.DELAYED
    plan, ok = take(plan, T0, Do.SCHEDULE_LEAVE)
    plan = step(plan, replace(ok, got=Got.TOO_LARGE, max_delay_ms=2_000), T0)
    assert plan.delay_ms == 2_000
    plan, ok = take(plan, T0, Do.SCHEDULE_LEAVE)
    plan = step(plan, replace(ok, got=Got.TOO_LARGE, max_delay_ms=1_000), T0)
    assert plan.mode == Mode.EXPIRING and "maximum delay" in (plan.fallback_reason or "")
    plan, ok = take(plan, T0, Do.SEND_JOIN)
    assert sent_expiry_ms(plan, ok.action) == TIMINGS.fallback_expires_ms


def test_no_delayed_events_means_an_expiring_membership_refreshed_before_it_runs_out() -> None:
    plan = step(initial(TIMINGS, None, True), Join(), T0)
    plan = done(plan, T0, Do.CANCEL_STALE)
    plan, ok = take(plan, T0, Do.SCHEDULE_LEAVE)
    plan = step(plan, replace(ok, got=Got.UNSUPPORTED, error="M_UNRECOGNIZED"), T0)
    assert plan.mode == Mode.EXPIRING and "M_UNRECOGNIZED" in (plan.fallback_reason or "")
    plan, ok = take(plan, T0, Do.SEND_JOIN)
    plan = step(plan, replace(ok, origin_ts=T0), T0)
    assert plan.expires_at_ms() == T0 + 60_000
    # Refreshed 5 s (headroom) + one heartbeat interval before it would expire; no heartbeat.
    assert next_action(plan, T0 + 50_999)[1] is None
    plan, ok = take(plan, T0 + 51_000, Do.REFRESH)
    assert sent_expiry_ms(plan, ok.action) == 120_000  # one period more, created_ts kept
    plan = step(plan, replace(ok, origin_ts=T0 + 51_000), T0 + 51_000)
    assert plan.created_ts == T0 and plan.expires_at_ms() == T0 + 120_000


def test_rate_limits_wait_as_the_server_says_and_a_join_that_keeps_failing_fails() -> None:
    plan = step(initial(TIMINGS, None, False), Join(), T0)  # expiring from the start
    plan, ok = take(plan, T0, Do.SEND_JOIN)
    plan = step(plan, replace(ok, got=Got.RATE_LIMITED, retry_after_ms=7_000), T0)
    assert next_action(plan, T0 + 6_999)[1] is None
    now = T0 + 7_000
    for _ in range(8):
        plan, ok = take(plan, now, Do.SEND_JOIN)
        plan = step(plan, replace(ok, got=Got.TRANSIENT, error="502"), now)
        now += 3_000
    assert plan.phase != Phase.FAILED
    plan, ok = take(plan, now, Do.SEND_JOIN)
    plan = step(plan, replace(ok, got=Got.TRANSIENT, error="502"), now)
    plan, ok = take(plan, now + 3_000, Do.SEND_JOIN)
    plan = step(plan, replace(ok, got=Got.TRANSIENT, error="502"), now + 3_000)
    assert plan.phase == Phase.FAILED and plan.last_error == "502" and plan.queue == ()


def test_a_fired_leave_found_by_the_heartbeat_puts_everything_back_once() -> None:
    """Frozen longer than the delay (SIGSTOP): the restart finds the leave gone, and the sync
    that shows the membership gone arrives while, or after, it is being put back."""
    plan = joined()
    thawed = T0 + 30_000
    plan, ok = take(plan, thawed, Do.RESTART_LEAVE)
    plan = step(plan, replace(ok, got=Got.NOT_FOUND), thawed)
    assert plan.rejoins == 1 and plan.delay_id is None and plan.phase == Phase.SCHEDULING_LEAVE
    # The sync's removal (the leave fired at T0 + 8 005) while scheduling: not JOINED, no-op.
    assert step(plan, Removed(origin_ts=T0 + 8_005), thawed) == plan
    plan = done(plan, thawed, Do.CANCEL_STALE)
    plan, ok = take(plan, thawed, Do.SCHEDULE_LEAVE)
    plan = step(plan, replace(ok, delay_id="d9"), thawed)
    plan, ok = take(plan, thawed, Do.SEND_JOIN)
    plan = step(plan, replace(ok, origin_ts=thawed + 4), thawed)
    # ... or after it: older than the membership just sent, so no second rejoin.
    plan = step(plan, Removed(origin_ts=T0 + 8_005), thawed + 100)
    assert plan.rejoins == 1 and plan.phase == Phase.JOINED and plan.delay_id == "d9"


def test_leaving_while_a_join_is_in_flight_ignores_its_late_answer() -> None:
    plan = step(initial(TIMINGS, None, True), Join(), T0)
    plan = done(plan, T0, Do.CANCEL_STALE)
    plan, ok = take(plan, T0, Do.SCHEDULE_LEAVE)
    plan = step(plan, replace(ok, delay_id="d1"), T0)
    plan, in_flight = take(plan, T0, Do.SEND_JOIN)
    plan = step(plan, Leave(), T0 + 1)  # the bot leaves while the membership is being sent
    assert plan.phase == Phase.LEAVING
    plan = step(plan, replace(in_flight, origin_ts=T0 + 2), T0 + 2)
    assert plan.phase == Phase.LEAVING  # the late answer of the old epoch changes nothing
    plan, ok = take(plan, T0 + 2, Do.SEND_LEAVE)
    plan = step(plan, replace(ok, got=Got.NOT_FOUND), T0 + 2)  # it had fired already
    plan, ok = take(plan, T0 + 2, Do.PUT_LEAVE)
    plan = step(plan, ok, T0 + 3)
    assert plan.phase == Phase.IDLE and plan.delay_id is None and plan.queue == ()
    assert next_action(plan, T0 + 10**9) == (plan, None, None)


def test_stale_leaves_are_the_other_delayed_leaves_for_our_key() -> None:
    key = "_@rtcbot:example.org_BOT_m.call"
    pending = [
        {
            "room_id": "!r",
            "type": "org.matrix.msc3401.call.member",
            "state_key": key,
            "delay_id": "old",
        },
        {
            "room_id": "!r",
            "type": "org.matrix.msc3401.call.member",
            "state_key": key,
            "delay_id": "mine",
        },
        {
            "room_id": "!other",
            "type": "org.matrix.msc3401.call.member",
            "state_key": key,
            "delay_id": "x",
        },
        {"room_id": "!r", "type": "m.room.message", "state_key": key, "delay_id": "y"},
        {
            "room_id": "!r",
            "type": "org.matrix.msc3401.call.member",
            "state_key": "_@a:b_D_m.call",
            "delay_id": "z",
        },
    ]
    assert stale_leaves(pending, "!r", key, "mine", "org.matrix.msc3401.call.member") == ["old"]


def test_the_per_user_delayed_event_cap_falls_back_to_expiry_instead_of_waiting() -> None:
    """Synapse's `msc4140_max_delayed_events_per_user` (capability `max_scheduled`): 429
    M_LIMIT_EXCEEDED with `retry_after_ms` until the oldest pending delayed event fires,
    far beyond the delay. Retried blindly the bot would stay out of the call that long."""
    plan = step(initial(TIMINGS, None, True), Join("audio"), T0)
    plan = done(plan, T0, Do.CANCEL_STALE)
    plan, ok = take(plan, T0, Do.SCHEDULE_LEAVE)
    far = replace(ok, got=Got.RATE_LIMITED, retry_after_ms=3_600_000)
    plan = step(plan, far, T0)
    assert plan.mode == Mode.EXPIRING, plan
    assert "limit of pending delayed events" in (plan.fallback_reason or "")
    plan, ok = take(plan, T0, Do.SEND_JOIN)  # at once, not in an hour
    assert sent_expiry_ms(plan, ok.action) == TIMINGS.fallback_expires_ms


def test_the_cap_is_recognised_by_synapses_words_even_with_a_short_retry() -> None:
    # The bot's own leaves elsewhere are restarted every few seconds: the oldest "fires" in
    # under a delay, again and again, and a retry would never get through.
    plan = step(initial(TIMINGS, None, True), Join("audio"), T0)
    plan = done(plan, T0, Do.CANCEL_STALE)
    plan, ok = take(plan, T0, Do.SCHEDULE_LEAVE)
    error = "429: The maximum number of delayed events has been reached."
    plan = step(plan, replace(ok, got=Got.RATE_LIMITED, retry_after_ms=3_000, error=error), T0)
    assert plan.mode == Mode.EXPIRING, plan


def test_an_ordinary_rate_limit_is_waited_out() -> None:
    plan = step(initial(TIMINGS, None, True), Join("audio"), T0)
    plan = done(plan, T0, Do.CANCEL_STALE)
    plan, ok = take(plan, T0, Do.SCHEDULE_LEAVE)
    plan = step(plan, replace(ok, got=Got.RATE_LIMITED, retry_after_ms=1_500), T0)
    assert plan.mode == Mode.DELAYED
    plan, _ok = take(plan, T0 + 1_500, Do.SCHEDULE_LEAVE)
