"""The delegated-leave state machine (rtc/delegated_leave.py): every transition and its timings,
with time passed in by the test (a fake clock), no I/O."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtcbot.rtc.delegated_leave import (
    MAX_SEND_WINDOW_S,
    MIN_RESTART_INTERVAL_S,
    POLL_UNTIL_CONNECTED,
    RATE_LIMIT_WAIT_S,
    REJOIN_GRACE_S,
    RESTART_RETRY,
    RESUME_POLL_RETRY,
    SEND_RETRY,
    Action,
    Backoff,
    Drop,
    Event,
    Job,
    Op,
    Outcome,
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
from rtcbot.rtc.leave_request import LeaveRequest

T0 = 1_000_000.0
NO_CHECK = Timings(check_interval_s=0)


def request(timeout_ms: int = 10_000) -> LeaveRequest:
    return LeaveRequest(
        livekit_room="lkroom",
        identity="@alice:hs.test:ALICEDEV",
        delay_id="syd_secretcapability",
        delay_timeout_ms=timeout_ms,
        server_name="hs.test",
        user_id="@alice:hs.test",
        room_id="!room:hs.test",
    )


@dataclass
class Clock:
    """A fake clock and the job it drives: feed events, advance time, read the actions."""

    job: Job
    now: float
    timings: Timings = field(default_factory=Timings)
    log: list[tuple[float, Action]] = field(default_factory=list)

    def record(self, t: Transition) -> tuple[Action, ...]:
        self.job = t.job
        self.log += [(self.now, a) for a in t.actions]
        return t.actions

    def feed(self, event: Event) -> tuple[Action, ...]:
        return self.record(step(self.job, event, self.now, self.timings))

    def advance_to_wake(self) -> tuple[Action, ...]:
        wake = self.job.wake_at()
        assert wake is not None, "the job has no timer"
        self.now = max(self.now, wake)
        return self.feed(Tick())

    def advance(self, seconds: float) -> tuple[Action, ...]:
        self.now += seconds
        return self.feed(Tick())


def started(timeout_ms: int = 10_000, timings: Timings = NO_CHECK) -> Clock:
    t = start(request(timeout_ms), T0, timings)
    clock = Clock(t.job, T0, timings)
    clock.record(t)
    return clock


def connected(timeout_ms: int = 10_000, timings: Timings = NO_CHECK) -> Clock:
    c = started(timeout_ms, timings)
    c.feed(PollResult(True, "PA_1"))
    return c


def confirm_gone(c: Clock) -> tuple[Action, ...]:
    """The grace after a left webhook passes, and the SFU confirms the participant is gone."""
    assert c.job.confirm_at is not None
    c.now = c.job.confirm_at
    assert runs(c.feed(Tick())) == [Op.POLL]
    return c.feed(PollResult(False))


def runs(actions: tuple[Action, ...]) -> list[Op]:
    return [a.op for a in actions if isinstance(a, Run)]


def drops(actions: tuple[Action, ...]) -> list[Outcome]:
    return [a.outcome for a in actions if isinstance(a, Drop)]


# -- policies ---------------------------------------------------------------------------------
def test_named_backoffs_grow_by_half_up_to_their_cap() -> None:
    assert [POLL_UNTIL_CONNECTED.wait(i) for i in range(4)] == [1.0, 1.5, 2.25, 3.375]
    assert POLL_UNTIL_CONNECTED.wait(100) == 60.0 == RESTART_RETRY.max_s == SEND_RETRY.max_s
    assert RESUME_POLL_RETRY.wait(50) == 30.0
    assert Backoff("x", 2.0, 2.0, 5.0).wait(10**9) == 5.0  # no overflow on huge attempts


# -- WAITING -----------------------------------------------------------------------------------
def test_a_new_job_asks_the_sfu_at_once_and_waits_for_the_answer() -> None:
    c = started()
    assert c.job.phase is Phase.WAITING
    assert [a for _, a in c.log] == [Run(Op.POLL)]
    assert c.job.pending is Op.POLL and c.job.wake_at() is None  # no second poll meanwhile
    assert c.feed(Tick()) == ()


def test_waiting_polls_back_off_1s_times_1_5_capped_at_60s() -> None:
    c = started(timeout_ms=3_600_000 * 10)  # a long delay: the connect timeout (1 h) rules
    polls = [T0]
    for _ in range(14):
        actions = c.feed(PollResult(False))
        assert not [a for a in actions if isinstance(a, Persist)]  # nothing worth storing
        assert runs(c.advance_to_wake()) == [Op.POLL]
        polls.append(c.now)
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(polls)]
    assert gaps[:4] == [1.0, 1.5, 2.25, 3.375]
    assert max(gaps) == 60.0 and gaps[-1] == 60.0


def test_a_failed_poll_is_retried_like_an_absent_participant() -> None:
    c = started()
    c.feed(PollResult(None))
    assert c.job.phase is Phase.WAITING and c.job.poll_at == T0 + 1.0


def test_found_by_a_poll_it_connects_and_restarts_at_once() -> None:
    c = started()
    actions = c.feed(PollResult(True, "PA_1"))
    assert isinstance(actions[0], Persist) and runs(actions) == [Op.RESTART]
    assert c.job.phase is Phase.CONNECTED and c.job.sid == "PA_1"
    assert c.job.restart_by == T0 + 10.0  # the full delay until a restart succeeds


def test_the_joined_webhook_connects_it_too() -> None:
    c = started()
    c.feed(PollResult(False))
    c.now += 0.3
    actions = c.feed(ParticipantJoined("PA_9"))
    assert c.job.phase is Phase.CONNECTED and c.job.sid == "PA_9"
    assert runs(actions) == [Op.RESTART]


def test_a_left_webhook_while_waiting_is_not_trusted() -> None:
    c = started()
    c.feed(PollResult(False))
    assert c.feed(ParticipantLeft("PA_old")) == ()  # maybe an older session of the identity
    assert c.job.phase is Phase.WAITING


def test_an_aborted_connection_while_waiting_ends_the_job_unsent() -> None:
    c = started()
    c.feed(PollResult(False))
    actions = c.feed(ParticipantLeft("PA_1", aborted=True))
    assert drops(actions) == [Outcome.CONNECTION_ABORTED] and runs(actions) == []
    assert c.job.finished


@pytest.mark.parametrize(
    ("timeout_ms", "connect_timeout_s", "sent_after_s"),
    [(10_000, 3600.0, 10.0), (7_200_000, 3600.0, 3600.0), (600_000, 8.0, 8.0)],
)
def test_never_connected_the_leave_is_sent_after_min_of_delay_and_connect_timeout(
    timeout_ms: int, connect_timeout_s: float, sent_after_s: float
) -> None:
    c = started(timeout_ms, Timings(connect_timeout_s=connect_timeout_s, check_interval_s=0))
    while c.job.phase is Phase.WAITING:
        c.feed(PollResult(False))
        actions = c.advance_to_wake()
    assert c.now == T0 + sent_after_s
    assert c.job.phase is Phase.DISCONNECTED and runs(actions) == [Op.SEND]


# -- CONNECTED ---------------------------------------------------------------------------------
def test_connected_it_restarts_every_80_percent_of_the_delay_forever() -> None:
    c = connected(timeout_ms=10_000)
    c.now += 0.1  # the homeserver answered a little later than the request
    c.feed(Tick())
    restarts = []
    for _ in range(50):  # 50 restarts: 400 s of a 10 s delay
        restarts.append(c.now)
        actions = c.feed(RestartResult(Result.OK, started_at=c.now))
        assert isinstance(actions[0], Persist)
        assert c.job.restarted_at == c.now and c.job.restart_by == c.now + 10.0
        assert runs(c.advance_to_wake()) == [Op.RESTART]
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(restarts)}
    assert gaps == {8.0}
    assert c.job.phase is Phase.CONNECTED


def test_the_restart_deadline_counts_from_when_the_request_went_out() -> None:
    c = connected(timeout_ms=10_000)
    c.now += 2.0  # a slow homeserver
    c.feed(RestartResult(Result.OK, started_at=c.now - 2.0))
    assert c.job.restarted_at == T0 and c.job.restart_at == T0 + 8.0


def test_tiny_delays_are_not_restarted_more_than_twice_a_second() -> None:
    c = connected(timeout_ms=100)
    c.feed(RestartResult(Result.OK, started_at=c.now))
    assert c.job.restart_at == T0 + MIN_RESTART_INTERVAL_S


def test_restart_404_means_the_leave_is_gone_nothing_is_sent() -> None:
    c = connected()
    actions = c.feed(RestartResult(Result.NOT_FOUND, started_at=c.now))
    assert drops(actions) == [Outcome.RESTART_NOT_FOUND] and runs(actions) == []


def test_a_refused_restart_ends_the_job() -> None:
    c = connected()
    assert drops(c.feed(RestartResult(Result.REFUSED, c.now))) == [Outcome.RESTART_FAILED]


def test_failed_restarts_back_off_until_the_homeserver_deadline() -> None:
    c = connected(timeout_ms=10_000)
    tries = [c.now]
    while not c.job.finished:
        actions = c.feed(RestartResult(Result.TRANSIENT, started_at=c.now))
        if not c.job.finished:
            assert runs(c.advance_to_wake()) == [Op.RESTART]
            tries.append(c.now)
    assert drops(actions) == [Outcome.RESTART_FAILED]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(tries)]
    assert gaps == [1.0, 1.5, 2.25, 3.375]  # the next wait (5.06 s) would pass T0 + 10 s
    assert tries[-1] < T0 + 10.0


def test_a_rate_limited_restart_waits_as_told() -> None:
    c = connected()
    c.feed(RestartResult(Result.RATE_LIMITED, c.now, retry_after_s=2.5))
    assert c.job.restart_at == T0 + 2.5
    c.advance_to_wake()
    c.feed(RestartResult(Result.RATE_LIMITED, c.now))  # no Retry-After: the default wait
    assert c.job.restart_at == T0 + 2.5 + RATE_LIMIT_WAIT_S
    c.advance_to_wake()
    assert drops(c.feed(RestartResult(Result.RATE_LIMITED, c.now, 60.0))) == [
        Outcome.RESTART_FAILED
    ]


@pytest.mark.parametrize("aborted", [False, True])
def test_a_left_or_aborted_participant_gets_its_leave_sent(aborted: bool) -> None:
    c = connected(timeout_ms=10_000)
    c.feed(RestartResult(Result.OK, c.now))
    c.now += 3.0
    assert c.feed(ParticipantLeft("PA_1", aborted=aborted)) == ()
    assert c.job.phase is Phase.CONNECTED and c.job.confirm_at == c.now + REJOIN_GRACE_S
    actions = confirm_gone(c)
    assert c.job.phase is Phase.DISCONNECTED and runs(actions) == [Op.SEND]
    assert isinstance(actions[0], Persist)
    assert c.job.send_by == T0 + 10.0  # until the homeserver would fire it itself


def test_a_left_webhook_of_an_older_session_is_ignored() -> None:
    c = connected()
    c.feed(RestartResult(Result.OK, c.now))
    assert c.feed(ParticipantLeft("PA_0")) == ()
    assert c.job.phase is Phase.CONNECTED


def test_a_newer_session_of_the_identity_becomes_the_one_watched() -> None:
    c = connected()
    c.feed(RestartResult(Result.OK, c.now))
    actions = c.feed(ParticipantJoined("PA_2"))
    assert actions == (Persist(),) and c.job.sid == "PA_2"
    assert c.feed(ParticipantLeft("PA_1")) == ()  # the old one leaving changes nothing
    assert c.feed(ParticipantLeft("PA_2")) == ()
    assert runs(confirm_gone(c)) == [Op.SEND]


def test_a_client_that_reconnects_within_the_grace_keeps_its_membership() -> None:
    """Element Call reconnects under the same identity: a new session joins a moment after
    the old one left. That must not send its leave (it would end the call for it)."""
    c = connected()
    c.feed(RestartResult(Result.OK, c.now))
    c.now += 1.0
    assert c.feed(ParticipantLeft("PA_1")) == ()
    c.now += 0.6
    c.feed(ParticipantJoined("PA_2"))
    assert c.job.phase is Phase.CONNECTED and c.job.sid == "PA_2" and c.job.confirm_at is None
    # The joined webhook lost: the confirming poll finds the new session.
    c = connected()
    c.feed(RestartResult(Result.OK, c.now))
    c.feed(ParticipantLeft("PA_1"))
    c.now = T0 + REJOIN_GRACE_S
    assert runs(c.feed(Tick())) == [Op.POLL]
    c.feed(PollResult(True, "PA_2"))
    assert c.job.phase is Phase.CONNECTED and c.job.sid == "PA_2" and c.job.confirm_at is None


def test_a_left_while_a_restart_is_in_flight_is_confirmed_after_its_answer() -> None:
    c = connected()
    assert c.job.pending is Op.RESTART
    assert c.feed(ParticipantLeft("PA_1")) == ()
    c.feed(RestartResult(Result.OK, c.now))  # applied: still connected until confirmed
    assert c.job.restarted_at == T0 and c.job.phase is Phase.CONNECTED
    assert runs(confirm_gone(c)) == [Op.SEND]


def test_the_sanity_check_sends_when_the_sfu_no_longer_knows_the_participant() -> None:
    c = connected(timeout_ms=100_000, timings=Timings(check_interval_s=30.0))
    c.feed(RestartResult(Result.OK, c.now))  # the next restart is due at T0 + 80 s
    assert c.job.poll_at == T0 + 30.0
    c.now = T0 + 30.0
    assert runs(c.feed(Tick())) == [Op.POLL]
    c.feed(PollResult(True, "PA_1"))
    assert c.job.poll_at == T0 + 60.0
    c.now = T0 + 60.0
    c.feed(Tick())
    c.feed(PollResult(None))  # the SFU could not be asked: try again later, keep the job
    assert c.job.phase is Phase.CONNECTED and c.job.poll_at == T0 + 90.0
    c.now = T0 + 80.0
    assert runs(c.feed(Tick())) == [Op.RESTART]
    c.feed(RestartResult(Result.OK, c.now))
    c.now = T0 + 90.0
    assert runs(c.feed(Tick())) == [Op.POLL]
    actions = c.feed(PollResult(False))
    assert c.job.phase is Phase.DISCONNECTED and runs(actions) == [Op.SEND]


def test_without_a_sanity_check_a_connected_job_only_restarts() -> None:
    c = connected(timings=NO_CHECK)
    c.feed(RestartResult(Result.OK, c.now))
    assert c.job.poll_at is None and c.job.wake_at() == T0 + 8.0


# -- DISCONNECTED ------------------------------------------------------------------------------
def disconnected(timeout_ms: int = 10_000, after_s: float = 3.0) -> Clock:
    c = connected(timeout_ms)
    c.feed(RestartResult(Result.OK, c.now))
    c.now += after_s
    c.feed(ParticipantLeft("PA_1"))
    confirm_gone(c)
    return c


@pytest.mark.parametrize(
    ("result", "outcome"),
    [
        (Result.OK, Outcome.SENT),
        (Result.NOT_FOUND, Outcome.ALREADY_SENT),
        (Result.REFUSED, Outcome.SEND_FAILED),
    ],
)
def test_the_send_answer_ends_the_job(result: Result, outcome: Outcome) -> None:
    c = disconnected()
    actions = c.feed(SendResult(result))
    assert drops(actions) == [outcome] and c.job.finished and c.job.outcome is outcome
    assert not [a for a in actions if isinstance(a, Persist)]


def test_failed_sends_are_retried_until_the_homeserver_deadline() -> None:
    c = disconnected(timeout_ms=10_000, after_s=3.0)  # deadline T0 + 10
    sends = [c.now]
    while not c.job.finished:
        actions = c.feed(SendResult(Result.TRANSIENT))
        if not c.job.finished:
            assert runs(c.advance_to_wake()) == [Op.SEND]
            sends.append(c.now)
    assert drops(actions) == [Outcome.SEND_FAILED]
    # Left at +3, confirmed gone at +6 (REJOIN_GRACE_S); 8.5 + 2.25 would be past +10.
    assert [round(s - T0, 3) for s in sends] == [6.0, 7.0, 8.5]


def test_the_send_window_is_at_least_1s_and_at_most_1h() -> None:
    late = disconnected(timeout_ms=10_000, after_s=7.5)  # confirmed gone at +10.5
    assert late.job.send_by == late.now + 1.0
    long = disconnected(timeout_ms=3 * 3_600_000, after_s=1.0)
    assert long.job.send_by == long.now + MAX_SEND_WINDOW_S


def test_a_rate_limited_send_waits_as_told() -> None:
    c = disconnected(timeout_ms=60_000)
    c.feed(SendResult(Result.RATE_LIMITED, retry_after_s=4.0))
    assert c.job.send_at == c.now + 4.0


def test_webhooks_after_the_participant_left_change_nothing() -> None:
    c = disconnected()
    for event in (ParticipantJoined("PA_3"), ParticipantLeft("PA_1"), PollResult(True, "x")):
        assert c.feed(event) == ()
    assert c.job.phase is Phase.DISCONNECTED and c.job.pending is Op.SEND


def test_a_finished_job_ignores_everything() -> None:
    c = disconnected()
    c.feed(SendResult(Result.OK))
    for event in (Tick(), ParticipantJoined("x"), SendResult(Result.OK), PollResult(True)):
        assert c.feed(event) == ()
    assert c.job.wake_at() is None


# -- after a restart of the plugin -------------------------------------------------------------
def test_resumed_past_the_homeserver_deadline_the_job_is_dropped_unsent() -> None:
    t = resume(request(10_000), Phase.CONNECTED, T0, T0 + 5, "PA_1", T0 + 15.0)
    assert t.job.finished and drops(t.actions) == [Outcome.EXPIRED] and runs(t.actions) == []


def test_a_connected_job_resumes_with_a_poll_that_decides() -> None:
    t = resume(request(10_000), Phase.CONNECTED, T0, T0 + 5, "PA_1", T0 + 7.0, NO_CHECK)
    assert t.job.phase is Phase.RESUMED and runs(t.actions) == [Op.POLL]
    c = Clock(t.job, T0 + 7.0, NO_CHECK)
    actions = c.feed(PollResult(True, "PA_1"))
    assert c.job.phase is Phase.CONNECTED and runs(actions) == [Op.RESTART]

    c = Clock(t.job, T0 + 7.0, NO_CHECK)
    actions = c.feed(PollResult(False))  # it left while the plugin was away
    assert c.job.phase is Phase.DISCONNECTED and runs(actions) == [Op.SEND]
    assert c.job.send_by == T0 + 15.0


def test_a_resumed_job_that_cannot_reach_the_sfu_expires_at_the_deadline() -> None:
    t = resume(request(10_000), Phase.CONNECTED, T0, T0 + 5, "", T0 + 6.0, NO_CHECK)
    c = Clock(t.job, T0 + 6.0, NO_CHECK)
    while not c.job.finished:
        c.feed(PollResult(None))
        actions = c.advance_to_wake()
    assert drops(actions) == [Outcome.EXPIRED] and c.now == T0 + 15.0


def test_webhooks_reach_a_resumed_job() -> None:
    t = resume(request(10_000), Phase.CONNECTED, T0, T0 + 5, "PA_1", T0 + 6.0, NO_CHECK)
    c = Clock(t.job, T0 + 6.0, NO_CHECK)
    assert c.feed(ParticipantLeft("PA_0")) == ()  # another session
    assert runs(c.feed(ParticipantLeft("PA_1"))) == [Op.SEND]
    c = Clock(t.job, T0 + 6.0, NO_CHECK)
    assert runs(c.feed(ParticipantJoined("PA_2"))) == [Op.RESTART]


def test_a_waiting_job_resumes_waiting_with_its_first_deadline() -> None:
    timings = Timings(connect_timeout_s=8.0, check_interval_s=0)
    t = resume(request(600_000), Phase.WAITING, T0, T0, "", T0 + 5.0, timings)
    assert t.job.phase is Phase.WAITING and t.job.connect_by == T0 + 8.0
    late = resume(request(600_000), Phase.WAITING, T0, T0, "", T0 + 9.0, timings)
    assert late.job.phase is Phase.DISCONNECTED and runs(late.actions) == [Op.SEND]


def test_a_disconnected_job_resumes_sending() -> None:
    t = resume(request(10_000), Phase.DISCONNECTED, T0, T0 + 2, "PA_1", T0 + 4.0)
    assert t.job.phase is Phase.DISCONNECTED and runs(t.actions) == [Op.SEND]


def test_the_request_never_shows_its_delay_id() -> None:
    assert "syd_" not in repr(request()) and "syd_" not in repr(started().job)


# -- properties --------------------------------------------------------------------------------
EVENTS = st.one_of(
    st.just(Tick()),
    st.builds(ParticipantJoined, st.sampled_from(["", "PA_1", "PA_2"])),
    st.builds(ParticipantLeft, st.sampled_from(["", "PA_1", "PA_2"]), st.booleans()),
    st.builds(PollResult, st.sampled_from([True, False, None]), st.sampled_from(["", "PA_1"])),
    st.builds(
        RestartResult,
        st.sampled_from(list(Result)),
        st.just(0.0),
        st.sampled_from([None, 0.5, 30.0]),
    ),
    st.builds(SendResult, st.sampled_from(list(Result)), st.sampled_from([None, 2.0])),
)


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(st.tuples(EVENTS, st.floats(0, 20)), max_size=60),
    # Delays below MIN_RESTART_INTERVAL_S / 0.8 cannot be kept alive (tested above).
    timeout_ms=st.sampled_from([1_000, 5_000, 60_000, 7_200_000]),
    check=st.sampled_from([0.0, 5.0]),
)
def test_one_operation_at_a_time_and_exactly_one_end(
    events: list[tuple[Event, float]], timeout_ms: int, check: float
) -> None:
    timings = Timings(connect_timeout_s=30.0, check_interval_s=check)
    c = started(timeout_ms, timings)
    for event, dt in events:
        c.now += dt
        if isinstance(event, RestartResult):
            event = RestartResult(event.result, c.now, event.retry_after_s)
        was_pending = c.job.pending
        actions = c.feed(event)
        started_ops = runs(actions)
        assert len(started_ops) <= 1
        if started_ops:
            # Time alone never starts a second operation while one is awaited (a webhook
            # that moves the job on abandons the old one: its late answer is ignored).
            assert was_pending is None or not isinstance(event, Tick)
            assert c.job.pending is started_ops[0]
        if c.job.phase is Phase.CONNECTED and c.job.pending is None:
            # Never past the homeserver's deadline without a restart planned before it.
            assert c.job.restart_at is not None and c.job.restart_at < c.job.restart_by
    ends = [a for _, a in c.log if isinstance(a, Drop)]
    assert len(ends) == (1 if c.job.finished else 0)
    if c.job.finished:
        assert c.log[-1][1] == ends[0]  # nothing after the end
