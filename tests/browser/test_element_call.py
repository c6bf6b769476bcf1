"""Smoke test against the real Element Call: alice joins a call from Chromium in a room with
the bot; the bot notices, the browser shows her tile, and a LiveKit peer with a call
membership is heard in the browser."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from rtcbot.rtc.identity import livekit_identity, livekit_room_alias
from rtcbot_stack.stack import Stack
from tests.browser.conftest import ElementCallFactory
from tests.conftest import PeerFactory, UserFactory
from tests.stack.matrix_user import (
    CALL_MEMBER,
    MatrixUser,
    body,
    call_member_content,
    is_message_from,
)

pytestmark = pytest.mark.stack

RTC_MEMBER_STICKY = "org.matrix.msc4143.rtc.member"  # EC matrix_2_0 mode (MSC4354 sticky)


def _own_membership_keys(state: list[dict[str, Any]], user: MatrixUser) -> list[dict[str, Any]]:
    return [
        e
        for e in state
        if e.get("type") == CALL_MEMBER
        and e.get("sender") == user.user_id
        and e.get("content", {}).get("device_id") == user.device_id
    ]


async def test_alice_in_element_call_hears_a_peer(
    stack: Stack,
    alice: MatrixUser,
    bot_id: str,
    bot_room: str,
    make_user: UserFactory,
    make_peer: PeerFactory,
    element_call: ElementCallFactory,
    tmp_path: Path,
) -> None:
    t0 = time.monotonic()
    before = (await alice.messages(bot_room, 1))[-1]["event_id"]

    page = await element_call(alice, bot_room)
    joined_s = time.monotonic() - t0

    # (1) The bot saw Element Call's membership and says a call started.
    notice = await alice.wait_for(
        bot_room,
        lambda e: is_message_from(e, bot_id) and "started a" in body(e),
        timeout=20,
        after=before,
    )
    print(f"[element-call] bot: {body(notice)!r}")
    mine = _own_membership_keys(await alice.get_state(bot_room), alice)
    assert mine, "Element Call wrote no call.member state event for alice's device"
    print(f"[element-call] EC membership: {mine[0]['state_key']} {json.dumps(mine[0]['content'])}")

    # (2) The browser shows alice's own tile.
    tiles = await page.wait_for_tiles(
        lambda ts: any(t.name and alice.user_id.split(":")[0][1:] in t.name for t in ts),
        "alice's own tile",
    )
    print(f"[element-call] tiles with alice alone: {tiles}")

    # (3) A LiveKit peer with a matching call membership (bob's device) is heard in the browser.
    bob = await make_user("bob")
    await alice.invite(bot_room, bob.user_id)
    await bob.join(bot_room)
    membership = call_member_content(bob)
    membership["foci_preferred"] = [
        {
            "type": "livekit",
            "livekit_service_url": stack.auth_service_url,
            "livekit_alias": bot_room,
        }
    ]
    await bob.put_state(
        bot_room, CALL_MEMBER, f"_{bob.user_id}_{bob.device_id}_m.call", membership
    )
    identity = f"{bob.user_id}:{bob.device_id}"
    peer = await make_peer(livekit_room_alias(bot_room), identity)
    await peer.publish_tone(660)

    heard = await page.wait_for_audio(identity, min_power=1e-3, window=1.0, timeout=30)
    tiles = await page.wait_for_tiles(lambda ts: len(ts) >= 2, "bob's tile")
    audio = await page.audio_by_identity()
    shot = await page.screenshot(tmp_path / "element-call-alice-and-bob.png")

    print(f"[element-call] heard from {identity}: {heard} mean power {heard.mean_power:.4f}")
    print(f"[element-call] tiles: {tiles}")
    print(f"[element-call] inbound audio: {audio}")
    print(f"[element-call] screenshot: {shot}")
    print(f"[element-call] join {joined_s:.1f} s, whole test {time.monotonic() - t0:.1f} s")
    assert heard.mean_power >= 1e-3


async def test_matrix_2_0_mode_sticky_membership(
    alice: MatrixUser,
    bot_id: str,
    bot_room: str,
    element_call: ElementCallFactory,
) -> None:
    """EC's other mode: a sticky `org.matrix.msc4143.rtc.member` event and a hashed LiveKit
    identity. The bot sees the call start, and EC's own tile carries the MSC4195 identity."""
    before = (await alice.messages(bot_room, 1))[-1]["event_id"]
    page = await element_call(alice, bot_room, rtc_mode="matrix_2_0", connection_stats=True)
    sticky = await alice.wait_for(
        bot_room,
        lambda e: e.get("type") == RTC_MEMBER_STICKY and e.get("sender") == alice.user_id,
        timeout=10,
        after=before,
    )
    content = sticky["content"]
    print(f"[element-call] matrix_2_0 membership: {json.dumps(content)}")
    notice = await alice.wait_for(
        bot_room,
        lambda e: is_message_from(e, bot_id) and "started a" in body(e),
        timeout=20,
        after=before,
    )
    print(f"[element-call] bot: {body(notice)!r}")
    member = content["member"]
    expected = livekit_identity(alice.user_id, member["device_id"], member["id"])
    tiles = await page.wait_for_tiles(
        lambda ts: any(t.identity == expected for t in ts), f"alice's tile as {expected}"
    )
    print(f"[element-call] matrix_2_0 tiles: {tiles}")
