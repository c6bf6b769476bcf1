"""Call membership on the real stack: notices, the bot's own membership, delayed leave, crashes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from rtcbot_stack.stack import Stack
from tests.stack.delayed import bot_delayed_events
from tests.stack.matrix_user import (
    CALL_MEMBER,
    MatrixUser,
    body,
    call_member_content,
    is_message_from,
)

pytestmark = pytest.mark.stack


def js_sdk_content(user: MatrixUser, intent: str = "audio", **extra: Any) -> dict[str, Any]:
    """What Element Call (compatibility mode) sends, per matrix-js-sdk's `CallMembership`."""
    transport = {
        "type": "livekit",
        "livekit_service_url": "http://127.0.0.1:1/x",
        "livekit_alias": "!r",
    }
    return {**call_member_content(user, intent), "foci_preferred": [transport], **extra}


def state_key(user: MatrixUser) -> str:
    return f"_{user.user_id}_{user.device_id}_m.call"


async def join_call(user: MatrixUser, room: str, intent: str = "audio") -> None:
    await user.put_state(room, CALL_MEMBER, state_key(user), js_sdk_content(user, intent))


async def leave_call(user: MatrixUser, room: str) -> None:
    await user.put_state(room, CALL_MEMBER, state_key(user), {})


def localpart(user: MatrixUser) -> str:
    return user.user_id[1:].split(":")[0]


async def notices_after(
    user: MatrixUser, room: str, bot_id: str, after: str, count: int, timeout: float = 15
) -> list[str]:
    found = await user.wait_for_notices(room, bot_id, count, after=after, timeout=timeout)
    return [body(e) for e in found]


@pytest.fixture
async def call_room(make_user, bot_id: str):  # type: ignore[no-untyped-def]
    alice = await make_user("alice")
    bob = await make_user("bob")
    carol = await make_user("carol")
    room = await alice.create_room(invite=[bot_id, bob.user_id, carol.user_id])
    await bob.join(room)
    await carol.join(room)
    await alice.wait_for_member(room, bot_id)
    return room, alice, bob, carol


async def test_calls_are_announced_with_batched_joins(call_room, bot_id: str) -> None:  # type: ignore[no-untyped-def]
    room, alice, bob, carol = call_room
    marker = await alice.send_text(room, "let's call")

    await join_call(alice, room, "audio")
    started = await notices_after(alice, room, bot_id, marker, 1)
    assert started[0] == f"📞 {localpart(alice)} started a voice call"

    # Bob and Carol join within the batch window: one notice for both.
    await join_call(bob, room)
    await join_call(carol, room)
    texts = await notices_after(alice, room, bot_id, marker, 2)
    assert texts[1] == f"{localpart(bob)} and {localpart(carol)} joined"

    await leave_call(bob, room)
    texts = await notices_after(alice, room, bot_id, marker, 3)
    assert texts[2] == f"{localpart(bob)} left"

    await leave_call(alice, room)
    await leave_call(carol, room)
    texts = await notices_after(alice, room, bot_id, marker, 4)
    ended = [t for t in texts if t.startswith("Call ended")]
    # The first line of the call card (the lines after it: times, who, talk time).
    assert ended and ended[0].splitlines()[0].endswith("· 3 people"), texts


async def test_legacy_memberships_array_is_read(call_room, bot_id: str) -> None:  # type: ignore[no-untyped-def]
    """Some mobile clients still send the pre-2024 per-user array (seed 002)."""
    room, alice, bob, _ = call_room
    marker = await alice.send_text(room, "legacy")
    now = int(time.time() * 1000)
    legacy = {
        "memberships": [
            {
                "application": "m.call",
                "call_id": "",
                "scope": "m.room",
                "device_id": bob.device_id,
                "expires_ts": now + 3_600_000,
                "foci_active": [{"type": "livekit", "livekit_service_url": "http://127.0.0.1:1"}],
                "membershipID": "legacy-1",
            }
        ]
    }
    await bob.put_state(room, CALL_MEMBER, bob.user_id, legacy)
    texts = await notices_after(alice, room, bot_id, marker, 1)
    assert texts[0].startswith(f"📞 {localpart(bob)} started")

    await bob.put_state(room, CALL_MEMBER, bob.user_id, {"memberships": []})
    texts = await notices_after(alice, room, bot_id, marker, 2)
    assert texts[1].startswith("Call ended")


async def test_notify_off_silences_the_room(call_room, bot_id: str) -> None:  # type: ignore[no-untyped-def]
    room, alice, bob, _ = call_room
    reply = await alice.command(room, "!call notify off", bot_id)
    assert "off" in body(reply)
    marker = await alice.send_text(room, "quiet call")
    await join_call(bob, room)
    await asyncio.sleep(3)
    await leave_call(bob, room)
    reply = await alice.command(room, "!call notify all", bot_id)
    events = await alice.messages(room, 30)
    ids = [e["event_id"] for e in events]
    between = events[ids.index(marker) + 1 : ids.index(reply["event_id"])]
    assert not [
        e
        for e in between
        if is_message_from(e, bot_id)
        and "call" in body(e).lower()
        and not body(e).startswith("Notifications")
    ], [body(e) for e in between]


async def test_malformed_memberships_do_not_stop_processing(call_room, bot_id: str) -> None:  # type: ignore[no-untyped-def]
    room, alice, bob, _ = call_room
    garbage: list[Any] = [
        {"application": 5},
        {"memberships": "x"},
        {"device_id": None, "application": "m.call"},
        {"application": "m.call", "call_id": [], "device_id": "D", "focus_active": "nope"},
        {"memberships": [{"expires_ts": "soon"}, 7, None]},
        {"a": {"b": {"c": [1, {"d": "\u0000"}]}}},
        {"application": "m.call", "call_id": "", "device_id": "X", "focus_active": {"type": 1}},
        {
            "application": "m.call",
            "call_id": "",
            "device_id": bob.device_id,
            "focus_active": {"type": "livekit"},
            "created_ts": "yesterday",
        },
    ]
    sem = asyncio.Semaphore(20)

    async def put(i: int) -> None:
        async with sem:
            key = f"_{bob.user_id}_JUNK{i}_m.call" if i % 3 else bob.user_id
            await bob.put_state(room, CALL_MEMBER, key, garbage[i % len(garbage)])

    await asyncio.gather(*(put(i) for i in range(1000)))
    marker = await alice.send_text(room, "after the junk")
    await join_call(alice, room)
    texts = await notices_after(alice, room, bot_id, marker, 1, timeout=30)
    assert texts[0] == f"📞 {localpart(alice)} started a voice call"
    reply = await alice.command(room, "!call version", bot_id)
    assert body(reply).startswith("rtcbot ")


# -- the bot's own membership ---------------------------------------------------------------
async def _bot_state(user: MatrixUser, room: str, bot_key: str) -> dict[str, Any]:
    try:
        return dict(await user.get_state_event(room, CALL_MEMBER, bot_key))
    except Exception:
        return {}


async def test_join_publishes_js_sdk_membership_with_delayed_leave(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str
) -> None:
    bot_key = f"_{bot_id}_{stack.bot['device_id']}_m.call"
    await alice.start_call(bot_room, bot_id)
    reply = await alice.command(bot_room, "!call join audio", bot_id)
    assert "joined" in body(reply).lower(), body(reply)

    content = await _bot_state(alice, bot_room, bot_key)
    assert content["application"] == "m.call"
    assert content["call_id"] == ""
    assert content["scope"] == "m.room"
    assert content["device_id"] == stack.bot["device_id"]
    assert content["membershipID"] == f"{bot_id}:{stack.bot['device_id']}"
    assert content["m.call.intent"] == "audio"
    assert content["focus_active"] == {"type": "livekit", "focus_selection": "multi_sfu"}
    assert isinstance(content["expires"], int) and content["expires"] > 0
    assert content["foci_preferred"][0]["type"] == "livekit"
    assert "created_ts" not in content  # js-sdk omits it on the first join

    delayed = bot_delayed_events(stack, bot_room)
    assert len(delayed) == 1
    assert delayed[0]["state_key"] == bot_key and delayed[0]["content"] == {}
    first_since = delayed[0]["delayed_since_ts"]
    await asyncio.sleep(5)  # longer than the restart interval
    delayed = bot_delayed_events(stack, bot_room)
    assert len(delayed) == 1 and delayed[0]["delayed_since_ts"] > first_since, "not restarted"

    status = await alice.command(bot_room, "!call status", bot_id)
    assert "delayed leave" in body(status)

    reply = await alice.command(bot_room, "!call leave", bot_id)
    assert await _bot_state(alice, bot_room, bot_key) == {}  # a graceful leave is immediate
    assert bot_delayed_events(stack, bot_room) == []


async def test_permission_problem_is_explained(make_user, bot_id: str) -> None:  # type: ignore[no-untyped-def]
    alice = await make_user("alice")
    room = await alice.create_room(invite=[bot_id], call_member_level=None)  # default: 50
    await alice.wait_for_member(room, bot_id)
    reply = await alice.command(room, "!call join", bot_id)
    text = body(reply)
    assert "power level 50" in text and "I have 0" in text, text
    assert "M_FORBIDDEN" not in text


async def test_sticky_rtc_member_events_are_followed(call_room, bot_id: str) -> None:  # type: ignore[no-untyped-def]
    """Element Call's matrix_2_0 mode: sticky org.matrix.msc4143.rtc.member (MSC4354)."""
    import uuid

    from mautrix.api import Method, Path

    room, alice, bob, _ = call_room
    marker = await alice.send_text(room, "sticky")
    sticky_key = uuid.uuid4().hex
    join = {
        "slot_id": "m.call#ROOM",
        "application": {"type": "m.call", "m.call.intent": "video"},
        "member": {"user_id": bob.user_id, "device_id": bob.device_id, "id": sticky_key},
        "rtc_transports": [{"type": "livekit", "livekit_service_url": "http://127.0.0.1:1"}],
        "versions": [],
        "msc4354_sticky_key": sticky_key,
    }
    sticky = {"org.matrix.msc4354.sticky_duration_ms": "3600000"}

    async def send(content: dict[str, Any]) -> None:
        path = Path.v3.rooms[room].send["org.matrix.msc4143.rtc.member"][uuid.uuid4().hex]
        await bob.request(Method.PUT, path, content, sticky)

    await send(join)
    texts = await notices_after(alice, room, bot_id, marker, 1)
    assert texts[0] == f"📞 {localpart(bob)} started a video call"
    await send({"msc4354_sticky_key": sticky_key})  # a sticky leave
    texts = await notices_after(alice, room, bot_id, marker, 2)
    assert texts[1].startswith("Call ended"), texts
