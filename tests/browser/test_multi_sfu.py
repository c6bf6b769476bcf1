"""Multi-SFU calls in the real Element Call: each member publishes on its own transport.

alice (440 Hz) publishes on the stack's transport (the one Synapse advertises); bob (660 Hz) on
a second, independent one (`second_transport`: another LiveKit with another rtcbot as its
authorization service), chosen with EC's `custom-livekit-url` setting, as a member of another
homeserver would. Each page subscribes on both SFUs, so each hears the other.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from rtcbot.rtc.membership import (
    CALL_MEMBER_TYPE,
    RTC_MEMBER_TYPE,
    Membership,
    parse_state_event,
    parse_sticky_event,
)
from rtcbot_stack.stack import Stack
from tests.browser.conftest import ElementCallFactory
from tests.browser.second_sfu import MatrixRtcTransport, SecondTransport, stack_transport
from tests.conftest import UserFactory
from tests.stack.eventually import eventually
from tests.stack.matrix_user import MatrixUser

pytestmark = pytest.mark.stack

Event = dict[str, Any]


async def sent_membership(
    user: MatrixUser, room_id: str, rtc_mode: str, after: str
) -> tuple[Event, Membership]:
    """The first call membership `user`'s Element Call sent after `after`: a state event
    (compatibility) or a sticky one (matrix_2_0), raw and parsed."""
    kind = RTC_MEMBER_TYPE if rtc_mode == "matrix_2_0" else CALL_MEMBER_TYPE
    event = await user.wait_for(
        room_id,
        lambda e: e.get("type") == kind and e.get("sender") == user.user_id and e["content"],
        timeout=30,
        after=after,
    )
    if kind == RTC_MEMBER_TYPE:
        parsed = parse_sticky_event(event, int(event["origin_server_ts"]))
    else:
        parsed = parse_state_event(event)
    assert parsed.ok and parsed.memberships, (parsed, event)
    print(f"[multi-sfu] {rtc_mode}: {user.user_id} sent {kind} {json.dumps(event['content'])}")
    return event, parsed.memberships[0]


async def wait_for_publishers(
    room_id: str, wanted: dict[str, MatrixRtcTransport], timeout: float = 30
) -> dict[str, dict[str, list[str]]]:
    """Poll every SFU until each wanted identity publishes audio on its transport; returns
    SFU name → identity → published track kinds."""
    transports = {t.name: t for t in wanted.values()}

    async def everyone_publishes() -> dict[str, dict[str, list[str]]] | None:
        seen = {name: await t.publishers(room_id) for name, t in transports.items()}
        ok = all("audio" in seen[t.name].get(who, []) for who, t in wanted.items())
        return seen if ok else None

    what = "each wanted identity publishing audio on its SFU"
    return await eventually(everyone_publishes, timeout=timeout, what=what)


@pytest.mark.parametrize("rtc_mode", ["matrix_2_0", "compatibility"])
async def test_element_call_users_on_two_sfus_hear_each_other(
    rtc_mode: str,
    stack: Stack,
    alice: MatrixUser,
    make_user: UserFactory,
    bot_room: str,
    element_call: ElementCallFactory,
    second_transport: SecondTransport,
) -> None:
    first = stack_transport(stack)
    second = second_transport
    bob = await make_user("bob")
    await alice.invite(bot_room, bob.user_id)
    await bob.join(bot_room)
    before = (await alice.messages(bot_room, 1))[-1]["event_id"]

    t0 = time.monotonic()
    alice_page = await element_call(alice, bot_room, tone_hz=440, rtc_mode=rtc_mode)
    _, alice_member = await sent_membership(alice, bot_room, rtc_mode, before)
    t_bob = time.monotonic()
    bob_page = await element_call(
        bob, bot_room, tone_hz=660, rtc_mode=rtc_mode, livekit_service_url=second.service_url
    )
    _, bob_member = await sent_membership(bob, bot_room, rtc_mode, before)

    # Each membership names its own transport as the one it publishes on.
    assert bob_member.transports, bob_member
    assert bob_member.transports[0].livekit_service_url == second.service_url, bob_member
    assert alice_member.transports[0].livekit_service_url == first.service_url, alice_member
    alice_id = alice_member.rtc_backend_identity
    bob_id = bob_member.rtc_backend_identity

    # Each one's media is on its own SFU (and not on the other's).
    publishers = await wait_for_publishers(bot_room, {alice_id: first, bob_id: second})
    t_sfus = time.monotonic()
    assert bob_id not in publishers[first.name], publishers
    assert alice_id not in publishers[second.name], publishers
    on_sfu = {
        t.name: sorted(p.identity for p in await t.participants(bot_room)) for t in (first, second)
    }
    print(f"[multi-sfu] {rtc_mode}: publishers {publishers}; participants {on_sfu}")
    print(f"[multi-sfu] identities: alice {alice_id}, bob {bob_id}")

    # Each page plays the other's tone: alice subscribes on bob's SFU, bob on alice's.
    heard_by_alice, heard_by_bob = await asyncio.gather(
        alice_page.wait_for_audio(bob_id, min_power=0.05, window=1.0, timeout=45),
        bob_page.wait_for_audio(alice_id, min_power=0.05, window=1.0, timeout=45),
    )
    t_heard = time.monotonic()
    print(f"[multi-sfu] alice hears bob: {heard_by_alice}")
    print(f"[multi-sfu] bob hears alice: {heard_by_bob}")
    # Both pages are now connected to both SFUs. On the SFU where a page only subscribes it
    # got its token from /get_token, so its identity there is the MSC4195 hash, also in
    # compatibility mode (of [user, device, membershipID]): only the count is checked.
    on_sfu = {
        t.name: sorted(p.identity for p in await t.participants(bot_room)) for t in (first, second)
    }
    print(f"[multi-sfu] participants once both hear the other: {on_sfu}")
    assert all(len(ids) >= 2 for ids in on_sfu.values()), on_sfu
    # The second transport's bot served the room without being in it.
    assert second.bot_user_id not in await alice.joined_members(bot_room)
    print(
        f"[multi-sfu] {rtc_mode} timings: alice in the call {t_bob - t0:.1f} s; bob in the "
        f"call and both publishing {t_sfus - t_bob:.1f} s; both hear the other "
        f"{t_heard - t_sfus:.1f} s later ({t_heard - t0:.1f} s in all)"
    )
