"""Limits on the real stack: how many recordings at once, how many speakers per recording, a
free-disk floor, and the bot's own call membership that another member overwrites.

One recording checks the three recording limits (each stack recording costs ~20 s): two real
LiveKit peers speak, only one speaker fits, a second room's recording is refused while it
runs, and then the disk floor is raised above the test filesystem's real free space (a real
condition, nothing mocked) so the running recording stops by itself with its files posted.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from rtcbot_stack.stack import Stack
from tests.integration.test_diagnostics import plugin_config
from tests.integration.test_recording_optout import two_people
from tests.stack.eventually import eventually
from tests.stack.matrix_user import (
    CALL_MEMBER,
    MatrixUser,
    body,
    call_member_content,
    files_after,
    is_reply_to,
)

pytestmark = pytest.mark.stack

FLOOR_ABOVE_ANY_DISK_MB = 1_000_000_000  # 1 PB: above the free space of any test machine


def set_config(stack: Stack, bot_id: str, **changes: dict[str, Any]) -> None:
    cfg = stack.plugin_config()
    for section, values in changes.items():
        cfg[section] = {**cfg.get(section, {}), **values}
    stack.maubot.put_instance("rtcbot", "dev.rtcbot", bot_id, json.dumps(cfg))


async def test_recording_limits_speakers_concurrency_and_disk_floor(
    stack: Stack, make_user, bot_room: str, alice: MatrixUser, bot_id: str, make_peer
) -> None:  # type: ignore[no-untyped-def]
    limits = {"max_concurrent": 1, "max_tracks": 1, "min_free_mb": 0}
    with plugin_config(stack, bot_id, recording=limits):
        bob = await two_people(make_user, bot_room, alice, make_peer)
        other_room = await alice.create_room(invite=[bot_id])
        await alice.wait_for_member(other_room, bot_id)
        await alice.start_call(bot_room, bot_id)
        reply = await alice.command(bot_room, "!call record start", bot_id, timeout=30)
        assert body(reply).startswith("🔴 Recording started"), body(reply)

        # Instance-wide: a second room's recording is refused while this one runs.
        await alice.start_call(other_room, bot_id)
        reply = await alice.command(other_room, "!call record start", bot_id, timeout=30)
        print(f"[limits] second room: {body(reply)}")
        assert "the most I record at once" in body(reply), body(reply)
        await asyncio.sleep(4)  # both peers' tones reach the recorder

        # The floor rises above the disk's real free space: the recording stops by itself.
        set_config(stack, bot_id, recording={**limits, "min_free_mb": FLOOR_ABOVE_ANY_DISK_MB})
        summary = await alice.wait_for(
            bot_room,
            lambda e: body(e).startswith("⏹️ Recording stopped"),
            60,
            after=reply["event_id"],
        )
        text = body(summary)
        print(f"[limits] summary: {text}")
        assert text.startswith("⏹️ Recording stopped (the disk is nearly full)"), text
        not_recorded = next(line for line in text.splitlines() if "Not recorded" in line)
        assert "recording.max_tracks" in not_recorded, not_recorded
        # Kept and posted: the mix and the one speaker who fitted; the other is named above.
        files = await files_after(alice, bot_room, bot_id, summary["event_id"], 2, 60)
        assert len(files) == 2, list(files)
        people = [n for n in files if not n.startswith("Mix")]
        # Named as the bot knew them when their track came (the localpart if no display name
        # had reached it yet).
        alice_names = [alice.user_id.split(":")[0][1:]]
        bob_names = ["Bob Optout", bob.user_id.split(":")[0][1:]]
        recorded, left = (
            (bob_names, alice_names) if "bob" in people[0].lower() else (alice_names, bob_names)
        )
        assert any(n in not_recorded for n in left), (not_recorded, people)
        assert not any(n in not_recorded for n in recorded), (not_recorded, people)

        # Below the floor, a new recording is refused with the reason (its reply: the
        # transcript of the stopped recording may be posting its progress meanwhile).
        start = await alice.send_text(bot_room, "!call record start")
        reply = await alice.wait_for(bot_room, is_reply_to(bot_id, start), 30, after=start)
        print(f"[limits] below the floor: {body(reply)}")
        assert "too little free disk space" in body(reply), body(reply)
    await bob.close()


async def test_a_foreign_write_to_the_bots_membership_counts_as_removed(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str
) -> None:
    """Review L4: a room admin puts their own content (their foci) under the bot's key; the
    bot treats it as its membership gone and writes its own again."""
    bot_key = f"_{bot_id}_{stack.bot['device_id']}_m.call"
    slow = {"delayed_leave_ms": 240_000, "restart_interval_ms": 120_000}
    with plugin_config(stack, bot_id, membership=slow):
        await _overwrite_and_see_it_undone(stack, bot_room, alice, bot_id, bot_key)


async def _overwrite_and_see_it_undone(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str, bot_key: str
) -> None:
    await alice.start_call(bot_room, bot_id)
    # Synapse cancels the bot's delayed leave when another user writes its key, and the next
    # heartbeat then puts the membership back; with heartbeats two minutes apart the room sees
    # what the bot does when the write itself reaches it (a homeserver without delayed events
    # has no heartbeat at all).
    reply = await alice.command(bot_room, "!call join", bot_id)
    assert body(reply).startswith("Joined the audio call"), body(reply)
    forged = call_member_content(alice)
    forged["foci_preferred"] = [
        {"type": "livekit", "livekit_service_url": "https://sfu.attacker.example"}
    ]
    sent = await alice.put_state(bot_room, CALL_MEMBER, bot_key, forged)

    async def put_back() -> Any:
        current = await alice.get_state_event_full(bot_room, CALL_MEMBER, bot_key)
        replaced = current.get("event_id") != sent["event_id"]
        return current if replaced and current.get("sender") == bot_id else None

    current = await eventually(
        put_back,
        timeout=20,
        what="the bot's own membership instead of the forged one",
        interval=0.2,
    )
    content = current["content"]
    print(f"[limits] the bot's membership again: sender {current['sender']}, {content}")
    assert content.get("device_id") == stack.bot["device_id"], content
    assert "attacker" not in json.dumps(content)
    reply = await alice.command(bot_room, "!call leave", bot_id, timeout=30)
    assert body(reply) == "Left the call.", body(reply)
