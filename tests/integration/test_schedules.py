"""Scheduled calls on the real stack: reminder, start notice, ring, the nobody-joined note,
and restarts of maubot that neither lose nor duplicate anything."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from rtcbot.schedules import format_clock
from rtcbot_stack.stack import Stack
from tests.stack.eventually import eventually
from tests.stack.matrix_user import Event, MatrixUser, body, is_message_from

pytestmark = pytest.mark.stack

RING_TYPE = "org.matrix.msc4075.rtc.notification"
LATE = "(posted late: I was offline)"


def schedule_tag(evt: Event) -> dict[str, Any]:
    return dict(evt.get("content", {}).get("dev.rtcbot", {}).get("schedule") or {})


def clock_at(ts_ms: int, tz: str = "UTC") -> str:
    """The clock the bot writes for the instant `ts_ms`, by the bot's own rule (format_clock):
    "10:51:07", but "10:51" when the seconds are zero."""
    return format_clock(datetime.fromtimestamp(ts_ms / 1000, UTC).astimezone(ZoneInfo(tz)))


def occurrence_clock(evt: Event, tz: str = "UTC") -> str:
    """The clock of the occurrence a schedule message is about (from its dev.rtcbot tag)."""
    return clock_at(int(schedule_tag(evt)["occurrence_ts"]), tz)


def is_action(bot_id: str, kind: str, schedule_id: int) -> Any:
    def match(evt: Event) -> bool:
        tag = schedule_tag(evt)
        return (
            is_message_from(evt, bot_id)
            and tag.get("kind") == kind
            and tag.get("id") == schedule_id
        )

    return match


def is_ring(bot_id: str) -> Any:
    return lambda e: e.get("type") == RING_TYPE and e.get("sender") == bot_id


def schedule_id(reply_text: str) -> int:
    m = re.search(r"Scheduled #(\d+) ", reply_text)
    assert m, reply_text
    return int(m[1])


async def add(alice: MatrixUser, room: str, bot_id: str, args: str) -> tuple[int, Event]:
    reply = await alice.command(room, f"!call schedule add {args}", bot_id)
    return schedule_id(body(reply)), reply


async def count(alice: MatrixUser, room: str, predicate: Any) -> int:
    return sum(1 for e in await alice.messages(room, 100) if predicate(e))


async def test_reminder_start_ring_and_nobody_note(
    bot_room: str, alice: MatrixUser, bot_id: str
) -> None:
    sid, reply = await add(
        alice, bot_room, bot_id, "in 6s Standup --remind 3s --ring --duration 3s"
    )
    text = body(reply)
    assert "Standup: once on" in text and "(UTC)" in text, text
    assert "reminder 3 s before, rings the room" in text.lower(), text
    after = reply["event_id"]

    reminder = await alice.wait_for(bot_room, is_action(bot_id, "reminder", sid), 15, after)
    reminder_text = body(reminder)
    clock = occurrence_clock(reminder)  # the room's schedules use UTC (asserted above)
    assert re.fullmatch(rf"⏰ Standup starts in [23] s \({re.escape(clock)}\)\.", reminder_text), (
        reminder_text
    )
    assert reminder["content"]["msgtype"] == "m.notice"

    start = await alice.wait_for(bot_room, is_action(bot_id, "start", sid), 10, after)
    assert body(start) == "@room 📞 Standup starts now: join the call in this room."
    assert start["content"]["m.mentions"] == {"room": True}
    # The start notice comes about 3 s after the reminder, not together with it.
    gap_ms = start["origin_server_ts"] - reminder["origin_server_ts"]
    assert 2000 <= gap_ms <= 6000, gap_ms

    ring = await alice.wait_for(bot_room, is_ring(bot_id), 10, after)
    content = ring["content"]
    assert content["notification_type"] == "ring"
    assert content["m.mentions"] == {"user_ids": [], "room": True}
    assert content["lifetime"] == 30000 and content["m.call.intent"] == "audio"
    assert abs(content["sender_ts"] - ring["origin_server_ts"]) < 5000
    assert "m.relates_to" not in content

    # Nobody joined within --duration: a note, once.
    note = await alice.wait_for(bot_room, is_action(bot_id, "nobody", sid), 15, after)
    assert body(note).startswith("Nobody joined the call for Standup"), body(note)

    await asyncio.sleep(2)
    for kind in ("reminder", "start", "nobody"):
        assert await count(alice, bot_room, is_action(bot_id, kind, sid)) == 1, kind
    assert await count(alice, bot_room, is_ring(bot_id)) == 1
    # A one-off is over after its last action.
    reply = await alice.command(bot_room, "!call schedule list", bot_id)
    assert body(reply).startswith("No schedules in this room"), body(reply)


async def test_restart_between_reminder_and_start_loses_and_duplicates_nothing(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str
) -> None:
    sid, reply = await add(alice, bot_room, bot_id, "in 15s Retro --remind 12s")
    after = reply["event_id"]
    await alice.wait_for(bot_room, is_action(bot_id, "reminder", sid), 15, after)

    stack.restart_maubot()  # graceful stop, then start again; the start is due meanwhile or soon
    start = await alice.wait_for(bot_room, is_action(bot_id, "start", sid), 60, after)
    assert "Retro" in body(start)

    await asyncio.sleep(3)  # time for a duplicate to show up, if there were one
    assert await count(alice, bot_room, is_action(bot_id, "reminder", sid)) == 1
    assert await count(alice, bot_room, is_action(bot_id, "start", sid)) == 1


async def test_kill_9_before_the_start_catches_up_late(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str
) -> None:
    """Killed before a start it never saw: after the restart it is posted late, once."""
    sid, reply = await add(alice, bot_room, bot_id, "in 3s Planning")
    after = reply["event_id"]
    stack.maubot.kill()
    await asyncio.sleep(5)  # the start passes while maubot is dead
    assert await count(alice, bot_room, is_action(bot_id, "start", sid)) == 0
    stack.restart_maubot()
    start = await alice.wait_for(bot_room, is_action(bot_id, "start", sid), 60, after)
    assert body(start).endswith(LATE), body(start)
    assert f"Planning started at {occurrence_clock(start)}: " in body(start), body(start)
    assert schedule_tag(start)["late"] is True
    await asyncio.sleep(3)
    assert await count(alice, bot_room, is_action(bot_id, "start", sid)) == 1


async def test_stopped_instance_catches_up_and_recurring_keeps_going(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str
) -> None:
    """A cron schedule every minute: the occurrence missed while the plugin was stopped is
    posted late when it starts again, once, and the schedule goes on."""
    sid, reply = await add(alice, bot_room, bot_id, '"* * * * *" Ticker')
    after = reply["event_id"]
    missed_ts = (int(time.time()) // 60 + 1) * 60_000
    if missed_ts - time.time() * 1000 < 5000:
        missed_ts += 60_000  # too close: that one may still come on time

    stack.maubot.api("PUT", "/instance/rtcbot", {"started": False})
    try:
        while time.time() * 1000 < missed_ts + 2000:
            await asyncio.sleep(0.5)
    finally:
        stack.maubot.api("PUT", "/instance/rtcbot", {"started": True, "enabled": True})

    late = await alice.wait_for(
        bot_room,
        lambda e: (
            is_action(bot_id, "start", sid)(e) and schedule_tag(e)["occurrence_ts"] == missed_ts
        ),
        30,
        after,
    )
    assert body(late).startswith("@room 📞 Ticker started at "), body(late)
    assert body(late).endswith(LATE), body(late)
    assert schedule_tag(late)["late"] is True

    # It goes on: the next one is the following minute.
    following = clock_at(missed_ts + 60_000)
    nxt = body(await alice.command(bot_room, "!call schedule next", bot_id))
    assert nxt.startswith(f"Next call: Ticker (#{sid}) on ") and f" {following} (UTC)" in nxt, nxt

    reply = await alice.command(bot_room, f"!call schedule remove {sid}", bot_id)
    assert body(reply) == f"Removed #{sid} Ticker."
    tags = [
        schedule_tag(e)["occurrence_ts"]
        for e in await alice.messages(bot_room, 100)
        if is_action(bot_id, "start", sid)(e)
    ]
    assert len(tags) == len(set(tags)) and missed_ts in tags, tags


async def test_no_room_ping_for_members_who_may_not_ping(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str, make_user: Any
) -> None:
    """A member without the power to notify the whole room gets no @room and no ring (here
    every member may add schedules: permissions.schedule_add is 0)."""
    cfg = stack.plugin_config()
    cfg["permissions"] = {"schedule_add": 0}
    stack.maubot.put_instance("rtcbot", "dev.rtcbot", bot_id, json.dumps(cfg))
    try:
        await _bob_schedules(bot_room, alice, bot_id, make_user)
    finally:
        stack.maubot.put_instance(
            "rtcbot", "dev.rtcbot", bot_id, json.dumps(stack.plugin_config())
        )


async def _bob_schedules(bot_room: str, alice: MatrixUser, bot_id: str, make_user: Any) -> None:
    bob: MatrixUser = await make_user("bob")
    await alice.invite(bot_room, bob.user_id)
    await bob.join(bot_room)
    reply = await bob.command(bot_room, "!call schedule add in 3s Bob's call --ring", bot_id)
    assert "too low to notify the whole room" in body(reply), body(reply)
    sid = schedule_id(body(reply))
    start = await bob.wait_for(bot_room, is_action(bot_id, "start", sid), 15, reply["event_id"])
    assert body(start) == "📞 Bob's call starts now: join the call in this room."
    assert start["content"]["m.mentions"] == {}
    await asyncio.sleep(2)
    assert await count(bob, bot_room, is_ring(bot_id)) == 0


async def set_level(admin: MatrixUser, room: str, user_id: str, level: int) -> None:
    levels = await admin.get_state_event(room, "m.room.power_levels")
    levels.setdefault("users", {})[user_id] = level
    await admin.put_state(room, "m.room.power_levels", "", levels)


async def test_a_schedule_acts_with_its_creators_levels_of_now(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str, make_user: Any
) -> None:
    """`--record` needs the level for recording (review L3); and at its start, a schedule
    whose creator was demoted, or left, neither pings, rings nor records, and says so."""
    bob: MatrixUser = await make_user("bob")
    carol: MatrixUser = await make_user("carol")
    for user in (bob, carol):
        await alice.invite(bot_room, user.user_id)
        await user.join(bot_room)
        await set_level(alice, bot_room, user.user_id, 50)  # moderators
    cfg = stack.plugin_config()
    cfg["permissions"] = {"record": 100}
    stack.maubot.put_instance("rtcbot", "dev.rtcbot", bot_id, json.dumps(cfg))
    try:
        refused = body(await bob.command(bot_room, "!call schedule add in 1h X --record", bot_id))
    finally:
        stack.maubot.put_instance(
            "rtcbot", "dev.rtcbot", bot_id, json.dumps(stack.plugin_config())
        )
    assert "--record needs the power level for recording, 100 (you have 50)" in refused, refused
    assert "No schedules" in body(await alice.command(bot_room, "!call schedule list", bot_id))

    bob_sid, bob_reply = await add(bob, bot_room, bot_id, "in 8s Demoted --ring --record")
    carol_sid, _ = await add(carol, bot_room, bot_id, "in 8s Gone --ring")
    await set_level(alice, bot_room, bob.user_id, 0)
    await carol.leave(bot_room)
    after = bob_reply["event_id"]
    for sid, title in ((bob_sid, "Demoted"), (carol_sid, "Gone")):
        start = await alice.wait_for(bot_room, is_action(bot_id, "start", sid), 20, after)
        print(f"\n[schedules] the start of {title}: {body(start)!r}")
        assert body(start) == (
            f"📞 {title} starts now: join the call in this room.\n\n⚠️ No ring and no "
            "recording: whoever made this schedule has left the room or no longer has the "
            "power level for it."
        ), body(start)
        assert start["content"]["m.mentions"] == {}
    # Answered after the start notices: a ring, had there been one, came before this answer.
    await alice.command(bot_room, "!call schedule list", bot_id)
    assert await count(alice, bot_room, is_ring(bot_id)) == 0


async def test_commands_and_their_errors(bot_room: str, alice: MatrixUser, bot_id: str) -> None:
    async def ask(text: str) -> str:
        return body(await alice.command(bot_room, f"!call schedule {text}", bot_id))

    assert "schedule add <when> <title>" in await ask("")
    assert "(the default)" in await ask("tz") and "UTC" in await ask("tz")
    assert "Did you mean Europe/Berlin?" in await ask("tz Europe/Berln")
    assert (await ask("tz europe/berlin")).startswith("Time zone set to Europe/Berlin")

    text = await ask("add every weekday 09:30 Daily standup --remind 10m")
    assert "Daily standup: every weekday at 09:30 (Europe/Berlin)." in text, text
    assert "Next: " in text and "Reminder 10 min before." in text, text
    sid = schedule_id(text)

    assert "I don't understand the time yesterday 9:00" in await ask("add yesterday 9:00 Old")
    assert "is in the past" in await ask("add 2020-01-01 10:00 Old")
    assert "Unknown time zone Mars/Base." in await ask("add tomorrow 10:00 X --tz Mars/Base")
    assert "Add a title after the time" in await ask("add tomorrow 10:00")
    cron = await ask('add "*/15 9-17 * * 1-5" Office hours --tz America/New_York')
    assert "on the cron schedule */15 9-17 * * 1-5 (America/New_York)" in cron, cron
    cron_id = schedule_id(cron)

    listing = await ask("list")
    assert f"#{sid} Daily standup — every weekday at 09:30 (Europe/Berlin)" in listing, listing
    assert f"#{cron_id} Office hours" in listing, listing
    assert (await ask("next")).startswith("Next call: ")

    assert "no schedule #99999" in await ask("remove 99999")
    assert await ask(f"remove #{sid}") == f"Removed #{sid} Daily standup."
    assert await ask(f"remove {cron_id}") == f"Removed #{cron_id} Office hours."
    assert (await ask("list")).startswith("No schedules in this room")
    assert await ask("next") == "Nothing is scheduled in this room."

    help_text = body(await alice.command(bot_room, "!call help", bot_id))
    assert "!call schedule" in help_text


async def test_record_flag_records_the_call_that_starts_after_the_notice(
    bot_room: str, alice: MatrixUser, bot_id: str, make_peer: Any
) -> None:
    """`--record`: at the start the room has no call yet, so the bot waits for one (it never
    starts a call itself) and records it when people join."""
    from rtcbot.rtc.identity import livekit_room_alias

    sid, reply = await add(alice, bot_room, bot_id, "in 3s Recorded standup --record")
    start = await alice.wait_for(bot_room, is_action(bot_id, "start", sid), 20, reply["event_id"])
    peer = await make_peer(livekit_room_alias(bot_room), "@tone-s:localhost:SCHED")
    await peer.publish_tone(550)
    await alice.start_call(bot_room, bot_id)
    recording = await alice.wait_for(
        bot_room, lambda e: body(e).startswith("🔴 Recording this call"), 30, start["event_id"]
    )
    assert "a schedule asked for it" in body(recording), body(recording)

    # Some audio reaches the recorder before it is stopped.
    async def some_audio() -> bool:
        status = await alice.command(bot_room, "!call record status", bot_id)
        return "0.0 MB" not in body(status)

    await eventually(some_audio, timeout=20, what="audio in !call record status", interval=0.5)
    stopped = await alice.send_text(bot_room, "!call record stop")
    summary = await alice.wait_for(
        bot_room, lambda e: body(e).startswith("⏹️ Recording stopped"), 60, stopped
    )
    assert "tone-s" in body(summary), body(summary)
