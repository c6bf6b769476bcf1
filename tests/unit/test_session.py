"""The per-room call model: who is in which call, and the events derived from it."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtcbot.rtc.membership import CALL_MEMBER_TYPE, RTC_MEMBER_TYPE, ParseResult
from rtcbot.rtc.own_content import livekit_transport, session_content
from rtcbot.rtc.session import (
    ActiveCall,
    CallEnded,
    CallEvent,
    CallStarted,
    MemberJoined,
    MemberLeft,
    RoomCalls,
)
from rtcbot.rtc.state_keys import make_state_key

T0 = 1_760_000_000_000
ROOM = "!room:example.org"
SFU = "https://rtc.example.org/livekit/jwt"
ALICE, BOB, CAROL, DAVE = (f"@{n}:example.org" for n in ("alice", "bob", "carol", "dave"))
EVERYONE = {ALICE, BOB, CAROL, DAVE}
MIN = 60_000
HOUR = 60 * MIN


def join_event(
    user: str,
    device: str = "DEV",
    ts: int = T0,
    *,
    intent: str | None = "audio",
    created_ts: int | None = None,
    expires_ms: int = 4 * HOUR,
    application: str = "m.call",
    call_id: str = "",
) -> dict[str, Any]:
    content = session_content(
        user,
        device,
        [livekit_transport(SFU, ROOM)],
        intent=intent,
        created_ts=created_ts,
        expires_ms=expires_ms,
        application=application,
        call_id=call_id,
    )
    return {
        "type": CALL_MEMBER_TYPE,
        "state_key": make_state_key(user, device, application, call_id),
        "sender": user,
        "content": content,
        "origin_server_ts": ts,
        "event_id": f"$join-{user}-{device}-{ts}",
    }


def leave_event(
    user: str, device: str = "DEV", ts: int = T0, application: str = "m.call", call_id: str = ""
) -> dict[str, Any]:
    return {
        "type": CALL_MEMBER_TYPE,
        "state_key": make_state_key(user, device, application, call_id),
        "sender": user,
        "content": {},
        "origin_server_ts": ts,
        "event_id": f"$leave-{user}-{device}-{ts}",
    }


def sticky_join(
    user: str, device: str = "DEV", member_id: str = "uuid-1", ts: int = T0, **extra: Any
) -> dict[str, Any]:
    event = {
        "type": RTC_MEMBER_TYPE,
        "sender": user,
        "origin_server_ts": ts,
        "event_id": f"$sticky-{user}-{ts}",
        "msc4354_sticky": {"duration_ms": HOUR},
        "content": {
            "slot_id": "m.call#ROOM",
            "application": {"type": "m.call", "m.call.intent": "video"},
            "member": {"user_id": user, "device_id": device, "id": member_id},
            "rtc_transports": [{"type": "livekit", "livekit_service_url": SFU}],
            "versions": [],
            "msc4354_sticky_key": member_id,
        },
    }
    event.update(extra)
    return event


def sticky_leave(user: str, member_id: str = "uuid-1", ts: int = T0) -> dict[str, Any]:
    return {
        "type": RTC_MEMBER_TYPE,
        "sender": user,
        "origin_server_ts": ts,
        "content": {"msc4354_sticky_key": member_id},
    }


def calls(joined: set[str] | None = None) -> RoomCalls:
    return RoomCalls(ROOM, joined=EVERYONE if joined is None else joined)


def kinds(events: list[CallEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


def room_call(rc: RoomCalls) -> ActiveCall:
    call = rc.call()
    assert call is not None
    return call


# --- the basic story --------------------------------------------------------------------------


def test_a_call_starts_grows_shrinks_and_ends() -> None:
    rc = calls()
    events = rc.apply_state(join_event(ALICE, intent="video"), T0)
    assert events == [
        CallStarted(ROOM, "m.call#ROOM", "m.call", ALICE, "video", T0),
        MemberJoined(ROOM, "m.call#ROOM", "m.call", ALICE, "DEV", T0, 0),
    ]
    assert rc.apply_state(join_event(BOB, ts=T0 + MIN), T0 + MIN) == [
        MemberJoined(ROOM, "m.call#ROOM", "m.call", BOB, "DEV", T0 + MIN, 0)
    ]
    assert kinds(rc.apply_state(join_event(CAROL, ts=T0 + 2 * MIN), T0 + 2 * MIN)) == [
        "MemberJoined"
    ]
    assert room_call(rc).user_ids() == [ALICE, BOB, CAROL]
    assert rc.apply_state(leave_event(BOB, ts=T0 + 5 * MIN), T0 + 5 * MIN) == [
        MemberLeft(ROOM, "m.call#ROOM", "m.call", BOB, "DEV", T0 + 5 * MIN, "left", 0)
    ]
    assert kinds(rc.apply_state(join_event(DAVE, ts=T0 + 6 * MIN), T0 + 6 * MIN)) == [
        "MemberJoined"
    ]
    rc.apply_state(leave_event(ALICE), T0 + 10 * MIN)
    rc.apply_state(leave_event(CAROL), T0 + 11 * MIN)
    events = rc.apply_state(leave_event(DAVE), T0 + 23 * MIN)
    assert events == [
        MemberLeft(ROOM, "m.call#ROOM", "m.call", DAVE, "DEV", T0 + 23 * MIN, "left", 0),
        CallEnded(
            room_id=ROOM,
            slot_id="m.call#ROOM",
            application="m.call",
            at_ms=T0 + 23 * MIN,
            started_at_ms=T0,
            duration_ms=23 * MIN,
            peak_participants=3,  # never more than three at once
            participants_total=4,
        ),
    ]
    assert rc.calls == {}
    assert rc.next_expiry_ms() is None


def test_refreshing_a_membership_is_not_a_new_join() -> None:
    rc = calls()
    rc.apply_state(join_event(ALICE), T0)
    # js-sdk's expiry update: same created_ts, longer expires, new event.
    refresh = join_event(ALICE, ts=T0 + 3 * HOUR, created_ts=T0, expires_ms=8 * HOUR)
    assert rc.apply_state(refresh, T0 + 3 * HOUR) == []
    member = next(iter(room_call(rc).members.values()))
    assert member.since_ms == T0
    assert member.expires_at == T0 + 8 * HOUR
    assert rc.next_expiry_ms() == T0 + 8 * HOUR
    # The exact same event again (e.g. a sync replay) changes nothing either.
    assert rc.apply_state(refresh, T0 + 3 * HOUR) == []


def test_a_second_device_is_not_a_second_person() -> None:
    rc = calls()
    rc.apply_state(join_event(ALICE, "LAPTOP"), T0)
    events = rc.apply_state(join_event(ALICE, "PHONE"), T0 + 1)
    assert events == [MemberJoined(ROOM, "m.call#ROOM", "m.call", ALICE, "PHONE", T0 + 1, 1)]
    rc.apply_state(join_event(BOB), T0 + 2)
    assert room_call(rc).peak_participants == 2
    events = rc.apply_state(leave_event(ALICE, "LAPTOP"), T0 + 3)
    assert events == [
        MemberLeft(ROOM, "m.call#ROOM", "m.call", ALICE, "LAPTOP", T0 + 3, "left", 1)
    ]
    rc.apply_state(leave_event(ALICE, "PHONE"), T0 + 4)
    ended = rc.apply_state(leave_event(BOB), T0 + 5)[-1]
    assert isinstance(ended, CallEnded)
    assert (ended.peak_participants, ended.participants_total) == (2, 2)


def test_the_intent_of_the_call_is_the_starters() -> None:
    rc = calls()
    started = rc.apply_state(join_event(ALICE, intent=None), T0)[0]
    assert isinstance(started, CallStarted) and started.intent is None
    rc.apply_state(join_event(BOB, intent="video"), T0 + 1)
    assert room_call(rc).intent == "video"  # learnt later from the first member stating one


# --- applications and slots stay apart ---------------------------------------------------------


def test_applications_and_slots_are_separate_calls() -> None:
    rc = calls()
    rc.apply_state(join_event(ALICE), T0)
    widget = rc.apply_state(join_event(BOB, application="io.element.widget"), T0 + 1)
    assert widget[0] == CallStarted(
        ROOM, "io.element.widget#ROOM", "io.element.widget", BOB, "audio", T0 + 1
    )
    breakout = rc.apply_state(join_event(CAROL, call_id="breakout"), T0 + 2)
    assert isinstance(breakout[0], CallStarted)
    assert breakout[0].slot_id == "m.call#breakout"
    assert set(rc.calls) == {
        ("m.call", "m.call#ROOM"),
        ("io.element.widget", "io.element.widget#ROOM"),
        ("m.call", "m.call#breakout"),
    }
    assert room_call(rc).user_ids() == [ALICE]
    ended = rc.apply_state(leave_event(BOB, application="io.element.widget"), T0 + 3)
    assert isinstance(ended[-1], CallEnded)
    assert ended[-1].slot_id == "io.element.widget#ROOM"
    assert room_call(rc).user_ids() == [ALICE]  # the room call goes on


# --- who counts ----------------------------------------------------------------------------------


def test_senders_not_joined_to_the_room_do_not_count() -> None:
    rc = calls(joined={ALICE})
    assert rc.apply_state(join_event(BOB), T0) == []
    assert rc.calls == {}
    events = rc.set_joined_members({ALICE, BOB}, T0 + 5)
    assert kinds(events) == ["CallStarted", "MemberJoined"]
    events = rc.set_joined_members({ALICE}, T0 + 10)
    assert events == [
        MemberLeft(ROOM, "m.call#ROOM", "m.call", BOB, "DEV", T0 + 10, "room_left", 0),
        CallEnded(ROOM, "m.call#ROOM", "m.call", T0 + 10, T0 + 5, 5, 1, 1),
    ]


def test_unknown_room_membership_counts_everyone_until_told() -> None:
    rc = RoomCalls(ROOM)
    assert rc.joined is None
    assert kinds(rc.apply_state(join_event(BOB), T0)) == ["CallStarted", "MemberJoined"]


def test_ghosts_expire_on_tick() -> None:
    rc = calls()
    rc.apply_state(join_event(ALICE, expires_ms=HOUR), T0)
    rc.apply_state(join_event(BOB, ts=T0 + MIN, expires_ms=2 * HOUR), T0 + MIN)
    assert rc.next_expiry_ms() == T0 + HOUR
    assert rc.tick(T0 + HOUR - 1) == []
    assert rc.tick(T0 + HOUR) == [
        MemberLeft(ROOM, "m.call#ROOM", "m.call", ALICE, "DEV", T0 + HOUR, "expired", 0)
    ]
    assert [m.user_id for m in rc.ghosts(T0 + HOUR)] == [ALICE]
    assert rc.next_expiry_ms() == T0 + MIN + 2 * HOUR
    events = rc.tick(T0 + 3 * HOUR)
    assert kinds(events) == ["MemberLeft", "CallEnded"]
    assert isinstance(events[0], MemberLeft) and events[0].reason == "expired"
    assert [m.user_id for m in rc.ghosts(T0 + 3 * HOUR)] == [ALICE, BOB]
    # A moderator clearing the ghost's state removes it from the list, silently.
    clear = {**leave_event(ALICE), "sender": "@mod:example.org"}
    assert rc.apply_state(clear, T0 + 3 * HOUR) == []
    assert [m.user_id for m in rc.ghosts(T0 + 3 * HOUR)] == [BOB]


def test_an_already_expired_membership_never_starts_a_call() -> None:
    rc = calls()
    stale = join_event(ALICE, ts=T0, expires_ms=HOUR)
    assert rc.apply_state(stale, T0 + 2 * HOUR) == []
    assert len(rc.ghosts(T0 + 2 * HOUR)) == 1


def test_invalid_content_replaces_the_previous_membership() -> None:
    seen: list[tuple[ParseResult, Any]] = []
    rc = RoomCalls(ROOM, joined=EVERYONE, on_invalid=lambda r, e: seen.append((r, e)))
    rc.apply_state(join_event(ALICE), T0)
    garbage = {**join_event(ALICE), "content": {"application": 5, "junk": True}}
    events = rc.apply_state(garbage, T0 + 1)
    assert kinds(events) == ["MemberLeft", "CallEnded"]
    assert len(seen) == 1 and seen[0][0].invalid and seen[0][1] is garbage


def test_other_event_types_are_ignored() -> None:
    rc = calls()
    assert rc.apply_state({**join_event(ALICE), "type": "m.room.member"}, T0) == []
    assert rc.apply_state("not an event", T0) == []  # type: ignore[arg-type]
    assert rc.apply_sticky(join_event(ALICE), T0) == []
    assert rc.calls == {}


def test_legacy_array_members_each_join() -> None:
    rc = calls()
    entry = {
        "application": "m.call",
        "call_id": "",
        "scope": "m.room",
        "expires": HOUR,
        "expires_ts": T0 + HOUR,
        "foci_active": [{"type": "livekit", "livekit_service_url": SFU}],
    }
    content = {
        "memberships": [
            {**entry, "device_id": "PHONE", "membershipID": "a1"},
            {**entry, "device_id": "TABLET", "membershipID": "a2"},
        ]
    }
    event = {
        "type": CALL_MEMBER_TYPE,
        "state_key": ALICE,
        "sender": ALICE,
        "content": content,
        "origin_server_ts": T0,
    }
    events = rc.apply_state(event, T0)
    assert kinds(events) == ["CallStarted", "MemberJoined", "MemberJoined"]
    assert {m.kind for m in room_call(rc).members.values()} == {"legacy"}
    events = rc.apply_state({**event, "content": {"memberships": []}}, T0 + 5)
    assert kinds(events) == ["MemberLeft", "MemberLeft", "CallEnded"]


# --- sticky memberships ------------------------------------------------------------------------


def test_sticky_members_join_and_leave() -> None:
    rc = calls()
    events = rc.apply_sticky(sticky_join(ALICE), T0)
    assert events[0] == CallStarted(ROOM, "m.call#ROOM", "m.call", ALICE, "video", T0)
    assert kinds(rc.apply_state(join_event(BOB), T0 + 1)) == ["MemberJoined"]  # same call
    assert kinds(rc.apply_sticky(sticky_leave(ALICE, ts=T0 + 2), T0 + 2)) == ["MemberLeft"]
    assert room_call(rc).user_ids() == [BOB]


def test_sticky_wins_over_a_state_membership_with_the_same_identity() -> None:
    rc = calls()
    state = join_event(ALICE)
    state["content"]["membershipID"] = "uuid-1"
    rc.apply_state(state, T0)
    assert rc.apply_sticky(sticky_join(ALICE, member_id="uuid-1", ts=T0 + 1), T0 + 1) == []
    (member,) = room_call(rc).members.values()
    assert member.kind == "sticky"
    assert member.since_ms == T0
    # The sticky one gone, the state one is still there: the person stays in the call.
    assert rc.apply_sticky(sticky_leave(ALICE, "uuid-1", ts=T0 + 2), T0 + 2) == []
    (member,) = room_call(rc).members.values()
    assert member.kind == "session"


def test_older_sticky_events_never_override_newer_ones() -> None:
    rc = calls()
    rc.apply_sticky(sticky_join(ALICE, ts=T0 + 10), T0 + 10)
    assert rc.apply_sticky(sticky_leave(ALICE, ts=T0 + 5), T0 + 11) == []  # stale leave
    assert room_call(rc).user_ids() == [ALICE]
    rc.apply_sticky(sticky_leave(ALICE, ts=T0 + 20), T0 + 20)
    assert rc.apply_sticky(sticky_join(ALICE, ts=T0 + 15), T0 + 21) == []  # stale join
    assert rc.calls == {}


def test_sticky_memberships_end_with_their_stickiness() -> None:
    rc = calls()
    rc.apply_sticky(sticky_join(ALICE, msc4354_sticky={"duration_ms": 10 * MIN}), T0)
    assert rc.next_expiry_ms() == T0 + 10 * MIN
    events = rc.tick(T0 + 10 * MIN)
    assert kinds(events) == ["MemberLeft", "CallEnded"]
    assert isinstance(events[0], MemberLeft) and events[0].reason == "expired"
    assert rc.memberships() == []  # forgotten, unlike state ghosts


# --- restart -------------------------------------------------------------------------------------


def test_rebuild_is_silent_and_dates_the_call_from_the_oldest_member() -> None:
    rc = calls()
    state = [
        join_event(ALICE, ts=T0 + 3 * HOUR, created_ts=T0),  # refreshed membership
        join_event(BOB, ts=T0 + 20 * MIN),
        join_event(CAROL, ts=T0 + 30 * MIN),  # not joined to the room any more
        join_event(DAVE, ts=T0 - 8 * HOUR),  # expired ghost
        leave_event(BOB, "OLDPHONE"),
        {"type": "m.room.name", "state_key": "", "content": {"name": "x"}},
    ]
    now = T0 + 3 * HOUR + MIN
    rc.rebuild(state, {ALICE, BOB, DAVE}, now)  # returns nothing: old news is not announced
    call = room_call(rc)
    assert call.started_at_ms == T0
    assert call.started_by == ALICE
    assert call.user_ids() == [ALICE, BOB]
    assert call.peak_participants == 2
    assert [m.user_id for m in rc.ghosts(now)] == [DAVE]
    # Nothing to announce for old news; the next real change is reported normally.
    rc.apply_state(leave_event(BOB), now + 1)
    ended = rc.apply_state(leave_event(ALICE), now + 2)[-1]
    assert isinstance(ended, CallEnded)
    assert ended.duration_ms == now + 2 - T0
    assert (ended.peak_participants, ended.participants_total) == (2, 2)


def test_rebuild_replaces_earlier_knowledge() -> None:
    rc = calls()
    rc.apply_state(join_event(ALICE), T0)
    rc.rebuild([], EVERYONE, T0 + 1, sticky_events=[sticky_join(BOB, ts=T0)])
    assert room_call(rc).user_ids() == [BOB]
    rc.rebuild([], EVERYONE, T0 + 2)
    assert rc.calls == {}


# --- hostile input -------------------------------------------------------------------------------


def test_a_valid_join_still_starts_a_call_after_1000_malformed_events() -> None:
    rc = calls()
    bad_contents: list[Any] = [
        {"application": None, "x": 1},
        {"memberships": "x"},
        {"device_id": "DEV", "call_id": "", "application": "m.call"},  # no focus_active
        {**join_event(ALICE)["content"], "created_ts": True},
        {**join_event(ALICE)["content"], "expires": -1},
        "junk",
        [1, 2, 3],
        {"application": "m.call", "focus_active": {"type": []}},
    ]
    for i in range(1000):
        event = join_event(ALICE, f"D{i}")
        event["content"] = bad_contents[i % len(bad_contents)]
        assert rc.apply_state(event, T0 + i) == []
        if i % 3 == 0:
            assert rc.apply_sticky({**sticky_join(BOB), "content": {"x": i}}, T0 + i) == []
    assert rc.calls == {}
    events = rc.apply_state(join_event(CAROL, ts=T0 + 2000), T0 + 2000)
    assert events[0] == CallStarted(ROOM, "m.call#ROOM", "m.call", CAROL, "audio", T0 + 2000)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats()
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=10), kids, max_size=3)
    ),
    max_leaves=12,
)


@st.composite
def hostile_events(draw: st.DrawFn) -> dict[str, Any]:
    user = draw(st.sampled_from([ALICE, BOB, "@x:y", "nobody"]))
    base = draw(
        st.sampled_from([join_event(user), leave_event(user), sticky_join(user), {}, {"a": 1}])
    )
    event = dict(base)
    if draw(st.booleans()) and isinstance(base.get("content"), dict):
        event["content"] = {
            **base["content"],
            **draw(st.dictionaries(st.text(max_size=10), json_values, max_size=4)),
        }
    else:
        event["content"] = draw(json_values)
    for name in draw(
        st.lists(st.sampled_from(["sender", "state_key", "origin_server_ts"]), max_size=2)
    ):
        event[name] = draw(json_values)
    return event


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(hostile_events(), max_size=10))
def test_hostile_events_never_raise_and_never_leave_empty_calls(
    events: list[dict[str, Any]],
) -> None:
    rc = calls()
    now = T0
    for event in events:
        now += 1000
        out = rc.apply_state(event, now) + rc.apply_sticky(event, now) + rc.tick(now)
        assert all(isinstance(e, CallStarted | MemberJoined | MemberLeft | CallEnded) for e in out)
        for call in rc.calls.values():
            assert call.members
            assert call.peak_participants >= len(call.user_ids())
    # The model is still alive: a fresh valid join is reported.
    assert kinds(rc.apply_state(join_event(DAVE, "NEW"), now + 1))[-1] == "MemberJoined"


# --- the model agrees with a naive recomputation and with its own event stream ---------------

USERS = [ALICE, BOB, CAROL]
DEVICES = ["A", "B"]
APPS = [("m.call", ""), ("m.call", "side"), ("io.element.widget", "")]


operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("join"),
            st.sampled_from(USERS),
            st.sampled_from(DEVICES),
            st.sampled_from(APPS),
            st.integers(min_value=1, max_value=5),  # expires, in minutes
        ),
        st.tuples(
            st.just("leave"),
            st.sampled_from(USERS),
            st.sampled_from(DEVICES),
            st.sampled_from(APPS),
        ),
        st.tuples(st.just("members"), st.sets(st.sampled_from(USERS))),
        st.tuples(st.just("wait"), st.integers(min_value=0, max_value=4 * MIN)),
    ),
    max_size=25,
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations)
def test_calls_match_a_naive_model_and_the_event_stream(ops: list[tuple[Any, ...]]) -> None:
    rc = calls(joined=set(USERS))
    # Naive model: state key -> (user, device, call key, expires_at)
    state: dict[str, tuple[str, str, tuple[str, str], int]] = {}
    joined = set(USERS)
    replay: dict[tuple[str, str], set[tuple[str, str]]] = {}  # rebuilt from events alone
    now = T0

    for op in ops:
        if op[0] == "join":
            _, user, device, (app, call_id), minutes = op
            expires = minutes * MIN
            event = join_event(
                user, device, now, application=app, call_id=call_id, expires_ms=expires
            )
            slot = f"{app}#{call_id or 'ROOM'}"
            state[event["state_key"]] = (user, device, (app, slot), now + minutes * MIN)
            out = rc.apply_state(event, now)
        elif op[0] == "leave":
            _, user, device, (app, call_id) = op
            event = leave_event(user, device, now, app, call_id)
            state.pop(event["state_key"], None)
            out = rc.apply_state(event, now)
        elif op[0] == "members":
            joined = set(op[1])
            out = rc.set_joined_members(joined, now)
        else:
            now += op[1]
            out = rc.tick(now)

        for e in out:
            key = (e.application, e.slot_id)
            if isinstance(e, CallStarted):
                assert key not in replay
                replay[key] = set()
            elif isinstance(e, MemberJoined):
                assert (e.user_id, e.device_id) not in replay[key]
                assert e.other_devices == sum(1 for u, _ in replay[key] if u == e.user_id)
                replay[key].add((e.user_id, e.device_id))
            elif isinstance(e, MemberLeft):
                replay[key].remove((e.user_id, e.device_id))
                assert e.other_devices == sum(1 for u, _ in replay[key] if u == e.user_id)
            else:
                assert replay.pop(key) == set()
                assert e.duration_ms >= 0
                assert 1 <= e.peak_participants <= e.participants_total

        expected: dict[tuple[str, str], set[tuple[str, str]]] = {}
        for user, device, call_key, expires_at in state.values():
            if user in joined and now < expires_at:
                expected.setdefault(call_key, set()).add((user, device))
        actual = {
            key: {(m.user_id, m.device_id) for m in call.members.values()}
            for key, call in rc.calls.items()
        }
        assert actual == expected
        assert replay == expected
        expiries = [exp for u, _, _, exp in state.values() if u in joined and now < exp]
        assert rc.next_expiry_ms() == min(expiries, default=None)
