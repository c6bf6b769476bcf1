"""The words people read about calls, and the batching of join/leave notices."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtcbot.rtc.announce import (
    JoinBatch,
    NoticeBatcher,
    describe_ended,
    describe_joins,
    describe_started,
    format_duration,
    join_names,
    should_post,
)
from rtcbot.rtc.membership import CALL_MEMBER_TYPE
from rtcbot.rtc.own_content import session_content
from rtcbot.rtc.session import (
    CallEnded,
    CallEvent,
    CallStarted,
    MemberJoined,
    MemberLeft,
    RoomCalls,
)
from rtcbot.rtc.state_keys import make_state_key

ROOM = "!room:example.org"
OTHER_ROOM = "!other:example.org"
SLOT = "m.call#ROOM"
T0 = 1_760_000_000_000
WINDOW = 10_000
SEC, MIN, HOUR = 1000, 60_000, 3_600_000


def joined(user: str, at: int = T0, room: str = ROOM, others: int = 0) -> MemberJoined:
    return MemberJoined(room, SLOT, "m.call", user, "DEV", at, others)


def left(user: str, at: int = T0, room: str = ROOM, others: int = 0) -> MemberLeft:
    return MemberLeft(room, SLOT, "m.call", user, "DEV", at, "left", others)


def started(user: str, at: int = T0, room: str = ROOM) -> CallStarted:
    return CallStarted(room, SLOT, "m.call", user, "audio", at)


def ended(at: int = T0, room: str = ROOM) -> CallEnded:
    return CallEnded(room, SLOT, "m.call", at, T0, at - T0, 2, 3)


# --- sentences -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("intent", "text"),
    [
        ("video", "📞 Alice started a video call"),
        ("audio", "📞 Alice started a voice call"),
        ("voice", "📞 Alice started a voice call"),
        (None, "📞 Alice started a call"),
        ("hologram", "📞 Alice started a call"),
    ],
)
def test_describe_started(intent: str | None, text: str) -> None:
    assert describe_started("Alice", intent) == text


@pytest.mark.parametrize(
    ("names", "text"),
    [
        ([], ""),
        (["Bob"], "Bob"),
        (["Bob", "Carol"], "Bob and Carol"),
        (["Bob", "Carol", "Dave"], "Bob, Carol and Dave"),
        (["A", "B", "C", "D", "E"], "A, B, C, D and E"),
        (["A", "B", "C", "D", "E", "F"], "A, B, C, D and 2 others"),
    ],
)
def test_join_names_is_plain_english(names: list[str], text: str) -> None:
    assert join_names(names) == text


@pytest.mark.parametrize(
    ("joined_names", "left_names", "text"),
    [
        (["Bob", "Carol"], [], "Bob and Carol joined"),
        (["Bob", "Carol", "Dave"], ["Eve"], "Bob, Carol and Dave joined · Eve left"),
        (["Bob"], ["Carol", "Dave"], "Bob joined · Carol and Dave left"),
        ([], ["Eve"], "Eve left"),
        ([], [], ""),
    ],
)
def test_describe_joins(joined_names: list[str], left_names: list[str], text: str) -> None:
    assert describe_joins(joined_names, left_names) == text


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0 s"),
        (-5 * SEC, "0 s"),  # clock skew never reads as negative time
        (40 * SEC, "40 s"),
        (59_999, "59 s"),
        (60 * SEC, "1 min"),
        (23 * MIN + 59 * SEC, "23 min"),
        (59 * MIN, "59 min"),
        (HOUR, "1 h"),
        (HOUR + 5 * MIN, "1 h 5 min"),
        (26 * HOUR + MIN, "26 h 1 min"),
    ],
)
def test_format_duration(ms: int, text: str) -> None:
    assert format_duration(ms) == text


def test_describe_ended() -> None:
    assert describe_ended(23 * MIN, 4) == "Call ended after 23 min · 4 people"
    assert describe_ended(40 * SEC, 1) == "Call ended after 40 s · 1 person"
    assert describe_ended(HOUR + 5 * MIN, 2) == "Call ended after 1 h 5 min · 2 people"


# --- notify levels -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "event", "expected"),
    [
        ("off", started("A"), False),
        ("off", ended(), False),
        ("off", joined("A"), False),
        ("summary", started("A"), True),
        ("summary", ended(), True),
        ("summary", joined("A"), False),
        ("summary", left("A"), False),
        ("summary", JoinBatch(ROOM, SLOT, ("A",), ()), False),
        ("all", started("A"), True),
        ("all", ended(), True),
        ("all", joined("A"), True),
        ("all", left("A"), True),
        ("all", JoinBatch(ROOM, SLOT, ("A",), ()), True),
        ("bogus", started("A"), True),  # unknown level behaves like "summary"
        ("bogus", joined("A"), False),
    ],
)
def test_should_post(level: str, event: Any, expected: bool) -> None:
    assert should_post(level, event) is expected


# --- batching ------------------------------------------------------------------------------------


def test_joins_in_one_window_become_one_line() -> None:
    b = NoticeBatcher(WINDOW)
    b.add(joined("@bob:x", T0), T0)
    b.add(joined("@carol:x", T0 + 2 * SEC), T0 + 2 * SEC)
    b.add(left("@eve:x", T0 + 3 * SEC), T0 + 3 * SEC)
    assert b.next_flush_ms() == T0 + WINDOW
    assert b.flush_due(T0 + WINDOW - 1) == []  # the window stays open until it is due
    assert b.flush_due(T0 + WINDOW) == [JoinBatch(ROOM, SLOT, ("@bob:x", "@carol:x"), ("@eve:x",))]
    assert b.pending() == 0
    assert b.next_flush_ms() is None
    # The next join opens a new window.
    b.add(joined("@dave:x", T0 + 20 * SEC), T0 + 20 * SEC)
    assert b.next_flush_ms() == T0 + 20 * SEC + WINDOW


@pytest.mark.parametrize(
    ("sequence", "expected"),
    [
        (["join", "leave"], ((), ())),  # popped in and out: nothing to say
        (["leave", "join"], ((), ())),  # a reconnect: still there
        (["join", "leave", "join"], (("@bob:x",), ())),
        (["leave", "join", "leave"], ((), ("@bob:x",))),
        (["join"], (("@bob:x",), ())),
        (["leave"], ((), ("@bob:x",))),
    ],
)
def test_a_persons_window_reports_only_the_net_change(
    sequence: list[str], expected: tuple[tuple[str, ...], tuple[str, ...]]
) -> None:
    b = NoticeBatcher(WINDOW)
    for i, step in enumerate(sequence):
        event = joined("@bob:x", T0 + i) if step == "join" else left("@bob:x", T0 + i)
        b.add(event, T0 + i)
    batches = b.flush_due(T0 + WINDOW)
    if expected == ((), ()):
        assert batches == []
    else:
        assert batches == [JoinBatch(ROOM, SLOT, *expected)]


def test_extra_devices_do_not_count_as_people_joining() -> None:
    b = NoticeBatcher(WINDOW)
    b.add(joined("@bob:x", T0, others=1), T0)
    b.add(left("@bob:x", T0, others=1), T0)
    assert b.pending() == 0
    assert b.flush_all() == []


def test_the_starter_is_not_announced_twice() -> None:
    b = NoticeBatcher(WINDOW)
    b.add(started("@alice:x"), T0)
    b.add(joined("@alice:x"), T0)
    b.add(joined("@bob:x", T0 + 1), T0 + 1)
    assert b.flush_due(T0 + WINDOW) == [JoinBatch(ROOM, SLOT, ("@bob:x",), ())]
    # ...but their leaving is news.
    b.add(started("@alice:x"), T0)
    b.add(joined("@alice:x"), T0)
    b.add(left("@alice:x", T0 + 5), T0 + 5)
    assert b.flush_all() == [JoinBatch(ROOM, SLOT, (), ("@alice:x",))]


def test_call_end_drops_pending_joins_and_leaves() -> None:
    b = NoticeBatcher(WINDOW)
    b.add(left("@bob:x"), T0)
    b.add(ended(T0 + 1), T0 + 1)
    assert b.pending() == 0
    assert b.flush_all() == []


def test_rooms_are_batched_separately() -> None:
    b = NoticeBatcher(WINDOW)
    b.add(joined("@bob:x", T0), T0)
    b.add(joined("@bob:x", T0 + 5 * SEC, room=OTHER_ROOM), T0 + 5 * SEC)
    assert b.flush_due(T0 + WINDOW) == [JoinBatch(ROOM, SLOT, ("@bob:x",), ())]
    assert b.next_flush_ms() == T0 + 5 * SEC + WINDOW
    assert b.flush_due(T0 + 5 * SEC + WINDOW) == [JoinBatch(OTHER_ROOM, SLOT, ("@bob:x",), ())]


def test_room_calls_events_through_the_batcher_read_naturally() -> None:
    """End to end: memberships in, the sentences people would read out."""
    names = {"@alice:x": "Alice", "@bob:x": "Bob", "@carol:x": "Carol"}
    rc = RoomCalls(ROOM, joined=set(names))
    b = NoticeBatcher(WINDOW)
    lines: list[str] = []

    def feed(events: list[CallEvent], now: int) -> None:
        for e in events:
            if isinstance(e, CallStarted):
                lines.append(describe_started(names[e.started_by], e.intent))
            elif isinstance(e, CallEnded):
                lines.append(describe_ended(e.duration_ms, e.peak_participants))
            b.add(e, now)

    def member(user: str, device: str, now: int, content: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": CALL_MEMBER_TYPE,
            "state_key": make_state_key(user, device),
            "sender": user,
            "content": content,
            "origin_server_ts": now,
        }

    def flush(now: int) -> None:
        for batch in b.flush_due(now):
            lines.append(
                describe_joins([names[u] for u in batch.joined], [names[u] for u in batch.left])
            )

    feed(rc.apply_state(member("@alice:x", "A", T0, session_content("@alice:x", "A")), T0), T0)
    for i, user in enumerate(["@bob:x", "@carol:x"], start=1):
        feed(rc.apply_state(member(user, "D", T0 + i, session_content(user, "D")), T0 + i), T0 + i)
    flush(T0 + WINDOW)
    later = T0 + 23 * MIN
    for i, (user, device) in enumerate([("@bob:x", "D"), ("@carol:x", "D"), ("@alice:x", "A")]):
        feed(rc.apply_state(member(user, device, later + i, {}), later + i), later + i)
    flush(later + WINDOW)
    assert lines == [
        "📞 Alice started a voice call",
        "Bob and Carol joined",
        "Call ended after 23 min · 3 people",
    ]


@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["@a:x", "@b:x", "@c:x"]), st.booleans()), max_size=30
    )
)
def test_batches_report_exactly_the_net_change(steps: list[tuple[str, bool]]) -> None:
    """Starting from who is in the call, a window reports before → after, nothing else."""
    present: set[str] = {"@c:x"}
    before = set(present)
    b = NoticeBatcher(WINDOW)
    for i, (user, join) in enumerate(steps):
        if join == (user in present):
            continue  # the session never reports a join of someone present (or vice versa)
        present.add(user) if join else present.discard(user)
        b.add(joined(user, T0 + i) if join else left(user, T0 + i), T0 + i)
    batches = b.flush_all()
    expected_joined, expected_left = present - before, before - present
    if not expected_joined and not expected_left:
        assert batches == []
    else:
        (batch,) = batches
        assert set(batch.joined) == expected_joined
        assert set(batch.left) == expected_left
