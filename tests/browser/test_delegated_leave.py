"""The real Element Call hands its delayed leave to rtcbot's authorization service, and a
crashed Element Call leaves the call at once.

Element Call 0.26.1 probes `POST <livekit_service_url>/delegate_delayed_leave`; rtcbot's
answer is no longer a 404, so Element Call schedules its own delayed leave with its
`delegated_delayed_leave` timing (1 hour instead of 18 s) and hands it over (`delay_id`,
`delay_timeout` and `delay_cs_api_url` with its `/sfu/get` request in compatibility mode).

Then alice's Chromium is killed with SIGKILL: no hang-up, no leave of her own. Without the
delegation her membership would stay for an hour; with it, LiveKit reports her gone, rtcbot
sends her leave, the room loses her membership and bob's Element Call drops her tile.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest
from mautrix.api import Method, Path

from rtcbot_stack.stack import Stack
from tests.browser.conftest import ElementCallFactory
from tests.browser.element_call import Chromium
from tests.conftest import UserFactory
from tests.stack.eventually import eventually
from tests.stack.matrix_user import CALL_MEMBER, MatrixUser

pytestmark = pytest.mark.stack

# No other test uses this tone, so alice gets a browser of her own, which this test kills.
KILLED_TONE_HZ = 523.0
EC_DELEGATED_DELAY_MS = 3_600_000  # Element Call's matrix_rtc_session.delegated_delayed_leave
GONE_WITHIN_S = 90.0  # the delegated timeout is an hour; LiveKit notices a dead peer in seconds


async def ec_membership(user: MatrixUser, room: str) -> dict[str, Any] | None:
    """The user's Element Call membership in the room's state (None: none, or left)."""
    for event in await user.get_state(room):
        content = event.get("content") or {}
        if (
            event.get("type") == CALL_MEMBER
            and event.get("sender") == user.user_id
            and content.get("device_id") == user.device_id
        ):
            return dict(event)
    return None


async def pending_leave_delays(user: MatrixUser) -> list[int]:
    resp = await user.request(Method.GET, Path.unstable["org.matrix.msc4140"].delayed_events)
    return [int(d.get("delay_ms") or d.get("delay") or 0) for d in resp["delayed_events"]]


async def log_line(stack: Stack, offset: int, pattern: str, timeout: float) -> str:
    log = stack.maubot.child.log_path
    m = await eventually(
        lambda: re.search(pattern + ".*", log.read_text(errors="replace")[offset:]),
        timeout=timeout,
        what=f"{pattern!r} in the maubot log",
    )
    return m.group(0)


async def test_a_killed_element_call_leaves_the_call_through_its_delegated_leave(
    stack: Stack,
    alice: MatrixUser,
    bot_room: str,
    make_user: UserFactory,
    element_call: ElementCallFactory,
    chromium: Chromium,
) -> None:
    bob = await make_user("bob")
    await alice.set_displayname("Alice Crash")
    await bob.set_displayname("Bob Watcher")
    await alice.invite(bot_room, bob.user_id)
    await bob.join(bot_room)
    offset = stack.maubot.child.log_path.stat().st_size

    bob_page = await element_call(bob, bot_room)
    alice_page = await element_call(alice, bot_room, tone_hz=KILLED_TONE_HZ)

    # (1) Element Call found the delegation offered and handed its leave over.
    probe = [line for line in await alice_page.console_tail(400) if "delegation" in line]
    print("[element-call] " + "\n[element-call] ".join(probe))
    assert any("supports delegation" in line for line in probe), probe
    handed = await log_line(
        stack, offset, re.escape(alice.user_id) + r" delegated its delayed leave via", 30
    )
    print(f"[rtcbot] {handed}")
    assert f"identity {alice.user_id}:{alice.device_id}" in handed, handed
    assert f"delay_timeout {EC_DELEGATED_DELAY_MS} ms" in handed, handed
    assert "delay_cs_api_url" in handed and "ignored" in handed, handed
    # Its own delayed leave now has the long, delegated delay.
    assert EC_DELEGATED_DELAY_MS in await pending_leave_delays(alice)
    connected = await log_line(
        stack,
        offset,
        r"Delegated leave of "
        + re.escape(f"{alice.user_id}:{alice.device_id}")
        + r".*: connected",
        30,
    )
    print(f"[rtcbot] {connected}")

    # Element Call sends its membership after the token and the hand-over, not before.
    async def alice_is_a_member() -> bool:
        return bool((await ec_membership(alice, bot_room) or {}).get("content"))

    await eventually(alice_is_a_member, timeout=30, what="alice's call membership")
    await bob_page.wait_for_tiles(
        lambda tiles: any(t.name == "Alice Crash" for t in tiles), "alice's tile", 30
    )

    # (2) alice's browser dies: no hang-up, no leave sent by Element Call.
    pids = await chromium.kill_browser(KILLED_TONE_HZ)
    t0 = time.monotonic()
    print(f"[element-call] SIGKILL to alice's Chromium: {len(pids)} processes")
    assert pids

    # (3) Her membership leaves the room's state and bob's Element Call drops her tile.
    while (await ec_membership(alice, bot_room) or {}).get("content"):
        assert time.monotonic() - t0 < GONE_WITHIN_S, "alice's membership stayed"
        await asyncio.sleep(0.25)
    gone_s = time.monotonic() - t0
    tiles = await bob_page.wait_for_tiles(
        lambda tiles: not any(t.name == "Alice Crash" for t in tiles),
        "alice's tile gone",
        max(5.0, GONE_WITHIN_S - gone_s),
    )
    tile_s = time.monotonic() - t0
    ended = await log_line(
        stack,
        offset,
        r"Delegated leave of " + re.escape(f"{alice.user_id}:{alice.device_id}") + r".* ended: ",
        10,
    )
    print(f"[rtcbot] {ended}")
    print(
        f"[delegated-leave] after the SIGKILL: membership gone in {gone_s:.1f} s, "
        f"alice's tile gone from bob's page in {tile_s:.1f} s (Element Call's own delayed "
        f"leave: {EC_DELEGATED_DELAY_MS // 1000} s); bob's tiles: {[t.name for t in tiles]}"
    )
    assert "ended: sent" in ended, ended
