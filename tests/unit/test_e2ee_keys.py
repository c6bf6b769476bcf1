"""Element Call's media keys, the pure part (rtc/e2ee_keys.py): the message as js-sdk sends and
checks it, the keys received, and the bot's own key rotation on a fake clock."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtcbot.rtc.e2ee_keys import (
    GRACE_MS,
    INDEX_COUNT,
    USE_KEY_DELAY_MS,
    InboundKeys,
    KeyMessage,
    KeyMessageError,
    MediaKey,
    MemberDevice,
    OutboundKeys,
    Rollout,
    decode_key,
    encode_key,
    key_message_content,
    member_devices,
    new_key,
    parse_key_message,
)
from rtcbot.rtc.identity import livekit_identity
from rtcbot.rtc.membership import CALL_MEMBER_TYPE, RTC_MEMBER_TYPE
from rtcbot.rtc.own_content import livekit_transport, session_content
from rtcbot.rtc.session import RoomCalls
from rtcbot.rtc.state_keys import make_state_key

ROOM = "!room:example.org"
ALICE, BOB, CAROL = "@alice:example.org", "@bob:example.org", "@carol:example.org"
T0 = 1_760_000_000_000
KEY16 = bytes(range(16))


def ec_content(**over: Any) -> dict[str, Any]:
    """What js-sdk 43's ToDeviceKeyTransport.sendKey builds (Element Call 0.26)."""
    content: dict[str, Any] = {
        "keys": {"index": 0, "key": "AAECAwQFBgcICQoLDA0ODw=="},
        "room_id": ROOM,
        "member": {"claimed_device_id": "ALICEDEV", "id": f"{ALICE}:ALICEDEV"},
        "session": {"call_id": "", "application": "m.call", "scope": "m.room"},
        "sent_ts": T0,
    }
    content.update(over)
    return content


# -- the message ------------------------------------------------------------------------------
def test_element_calls_message_is_read() -> None:
    msg = parse_key_message(ec_content(), ALICE, room_id=ROOM)
    assert msg == KeyMessage(ROOM, ALICE, "ALICEDEV", f"{ALICE}:ALICEDEV", MediaKey(0, KEY16), T0)
    assert "AAEC" not in repr(msg) and repr(KEY16) not in repr(msg)  # keys never printed


def test_member_id_defaults_as_js_sdk() -> None:
    msg = parse_key_message(ec_content(member={"claimed_device_id": "D"}), ALICE)
    assert msg.member_id == f"{ALICE}:D"


@pytest.mark.parametrize(
    "text",
    [
        "AAECAwQFBgcICQoLDA0ODw==",  # padded standard (js-sdk)
        "AAECAwQFBgcICQoLDA0ODw",  # unpadded (matrix-rust-sdk example)
        "AAECAwQFBgcICQoLDA0ODw=",
    ],
)
def test_keys_in_any_base64_flavour(text: str) -> None:
    assert decode_key(text) == KEY16


def test_url_safe_base64_is_accepted() -> None:
    key = bytes([0xFB, 0xFF, 0xBF] * 5 + [0xFE])
    std = base64.b64encode(key).decode()
    assert "+" in std or "/" in std
    url = base64.urlsafe_b64encode(key).decode().rstrip("=")
    assert decode_key(url) == key == decode_key(std)


def test_keys_are_written_as_js_sdk_writes_them() -> None:
    key = new_key()
    assert len(key) == 16 and new_key() != key
    text = encode_key(key)
    assert len(text) == 24 and text.endswith("==") and "-" not in text and "_" not in text
    assert base64.b64decode(text) == key


def test_sent_content_is_read_back() -> None:
    content = key_message_content(ROOM, "@bot:hs:BOTDEV", "BOTDEV", MediaKey(7, KEY16), T0)
    # Both shapes at once: js-sdk 45's media_key/member_id and js-sdk 43's fields.
    assert content == {
        "keys": {"index": 7, "key": encode_key(KEY16)},
        "media_key": {"index": 7, "key": encode_key(KEY16)},
        "room_id": ROOM,
        "member_id": "@bot:hs:BOTDEV",
        "member": {"claimed_device_id": "BOTDEV", "id": "@bot:hs:BOTDEV"},
        "session": {"call_id": "", "application": "m.call", "scope": "m.room"},
        "sent_ts": T0,
    }
    back = parse_key_message(content, "@bot:hs")
    assert back.key == MediaKey(7, KEY16) and back.device_id == "BOTDEV"
    assert back.member_id == "@bot:hs:BOTDEV"


KEY32 = bytes(range(32))


def js_sdk_45(deprecated: bool = True) -> dict[str, Any]:
    """js-sdk 45 (#5619) ToDeviceKeyTransport.sendKey: `media_key` and `member_id`; `keys`
    and `member.id` "Deprecated but still sent for backwards compatibility"; no `session`,
    no `sent_ts`."""
    content: dict[str, Any] = {
        "room_id": ROOM,
        "member_id": "m-45",
        "media_key": {"index": 3, "key": encode_key(KEY16)},
        "member": {"claimed_device_id": "ALICEDEV"},
    }
    if deprecated:
        content["keys"] = {"index": 3, "key": encode_key(KEY16)}
        content["member"]["id"] = "m-45"
    return content


@pytest.mark.parametrize("deprecated", [True, False])
def test_js_sdk_45_keys_are_read(deprecated: bool) -> None:
    msg = parse_key_message(js_sdk_45(deprecated), ALICE, room_id=ROOM)
    assert (msg.device_id, msg.member_id, msg.key) == ("ALICEDEV", "m-45", MediaKey(3, KEY16))
    assert msg.sent_ts is None


def test_media_key_wins_over_the_deprecated_keys() -> None:
    content = js_sdk_45() | {"keys": {"index": 9, "key": encode_key(KEY32)}}
    assert parse_key_message(content, ALICE).key == MediaKey(3, KEY16)


def test_an_msc4143_current_key_takes_its_device_from_the_olm_session() -> None:
    # matrix-rust-rtc `org.matrix.msc4143.rtc.encryption_key`: 32-byte key, format 0, no
    # member (compat/sticky_2025.rs, "MSC4143 today").
    content = {
        "room_id": ROOM,
        "member_id": "rust-member",
        "media_key": {"index": 0, "key": encode_key(KEY32)},
        "format": 0,
    }
    msg = parse_key_message(content, ALICE, room_id=ROOM, device_id="RUSTDEV")
    assert (msg.device_id, msg.member_id, msg.key) == (
        "RUSTDEV",
        "rust-member",
        MediaKey(0, KEY32),
    )
    with pytest.raises(KeyMessageError, match="claimed_device_id"):
        parse_key_message(content, ALICE)  # no authenticated device: nothing to bind it to


@pytest.mark.parametrize("index", [0, 1, 254, 255, 255.0])
def test_indexes_of_the_key_ring(index: float) -> None:
    assert parse_key_message(
        ec_content(keys={"index": index, "key": encode_key(KEY16)}), ALICE
    ).key.index == int(index)


BAD: list[tuple[Any, str]] = [
    ("not an object", "not an object"),
    (ec_content(room_id=None), "room_id"),
    (ec_content(room_id=""), "room_id"),
    (ec_content(room_id="!other:example.org"), "not this room"),
    (ec_content(keys=None), r"keys\) is missing"),
    (ec_content(keys=[0, "x"]), r"keys\) is missing"),
    (ec_content(keys={"index": 0}), "keys.key"),
    (ec_content(keys={"index": 0, "key": ""}), "keys.key"),
    (ec_content(keys={"index": 0, "key": 12}), "keys.key"),
    (ec_content(keys={"index": 0, "key": "not base64!"}), "not base64"),
    (ec_content(keys={"index": 0, "key": "A"}), "not base64"),
    (ec_content(keys={"index": 0, "key": "=="}), "empty"),
    (ec_content(keys={"index": 0, "key": encode_key(bytes(200))}), "at most"),
    (ec_content(keys={"key": encode_key(KEY16)}), "keys.index"),
    (ec_content(keys={"index": "0", "key": encode_key(KEY16)}), "keys.index"),
    (ec_content(keys={"index": True, "key": encode_key(KEY16)}), "keys.index"),
    (ec_content(keys={"index": 1.5, "key": encode_key(KEY16)}), "whole number"),
    (ec_content(keys={"index": -1, "key": encode_key(KEY16)}), "outside 0–255"),
    (ec_content(keys={"index": 256, "key": encode_key(KEY16)}), "outside 0–255"),
    (ec_content(member=None), "claimed_device_id is missing"),
    (ec_content(member={"id": "x"}), "claimed_device_id"),
    (ec_content(member={"claimed_device_id": ""}), "claimed_device_id"),
]


@pytest.mark.parametrize(("content", "why"), BAD)
def test_bad_messages_are_refused_with_the_reason(content: Any, why: str) -> None:
    with pytest.raises(KeyMessageError, match=why) as e:
        parse_key_message(content, ALICE, room_id=ROOM)
    assert "AAEC" not in str(e.value)


@given(st.text(max_size=40))
def test_any_key_text_is_read_or_refused_never_a_crash(text: str) -> None:
    try:
        assert decode_key(text)
    except KeyMessageError:
        pass


def test_session_is_not_checked_as_js_sdk() -> None:
    assert parse_key_message(ec_content(session={"whatever": 1}), ALICE).room_id == ROOM


# -- the call's devices -----------------------------------------------------------------------
def state_member(
    user: str, device: str, ts: int = T0, created_ts: int | None = None
) -> dict[str, Any]:
    return {
        "type": CALL_MEMBER_TYPE,
        "state_key": make_state_key(user, device),
        "sender": user,
        "content": session_content(
            user,
            device,
            [livekit_transport("https://sfu.example.org", ROOM)],
            created_ts=created_ts,
        ),
        "origin_server_ts": ts,
        "event_id": f"$s{user}{device}{ts}",
    }


def sticky_member(user: str, device: str, member_id: str, ts: int = T0) -> dict[str, Any]:
    return {
        "type": RTC_MEMBER_TYPE,
        "sender": user,
        "content": {
            "slot_id": "m.call#ROOM",
            "application": {"type": "m.call"},
            "member": {"user_id": user, "device_id": device, "id": member_id},
            "rtc_transports": [
                {"type": "livekit", "livekit_service_url": "https://sfu.example.org"}
            ],
            "versions": [],
            "msc4354_sticky_key": member_id,
        },
        "msc4354_sticky": {"duration_ms": 3_600_000},
        "origin_server_ts": ts,
        "event_id": f"$r{user}{device}{ts}",
    }


def devices_of(
    calls: RoomCalls, own: tuple[str, str] | None = None
) -> dict[tuple[str, str], MemberDevice]:
    call = calls.call()
    assert call is not None
    return member_devices(call.members.values(), own)


def test_member_devices_identity_and_timestamps() -> None:
    calls = RoomCalls(ROOM)
    calls.apply_state(state_member(ALICE, "A1", created_ts=T0 - 5), T0)
    calls.apply_state(state_member("@bot:example.org", "BOT"), T0)
    calls.apply_sticky(sticky_member(BOB, "B1", "mem-1", T0 + 7), T0 + 7)
    devices = devices_of(calls, own=("@bot:example.org", "BOT"))
    assert set(devices) == {(ALICE, "A1"), (BOB, "B1")}
    assert devices[(ALICE, "A1")].identity == f"{ALICE}:A1"
    assert devices[(ALICE, "A1")].target == (ALICE, "A1", T0 - 5)
    # Sticky (matrix_2_0): the MSC4195 hash, as Element Call's LiveKit identity.
    assert devices[(BOB, "B1")].identity == livekit_identity(BOB, "B1", "mem-1")
    assert devices[(BOB, "B1")].created_ts == T0 + 7


# -- keys received ----------------------------------------------------------------------------
def msg(index: int, key: bytes, user: str = ALICE, device: str = "A1") -> KeyMessage:
    return KeyMessage(ROOM, user, device, f"{user}:{device}", MediaKey(index, key), None)


K1, K2, K3 = (bytes([n]) * 16 for n in (1, 2, 3))


def test_later_key_for_an_index_wins() -> None:
    inbound = InboundKeys()
    assert inbound.add(msg(0, K1), T0)
    assert inbound.add(msg(0, K2), T0 + 10)
    assert inbound.keys_of((ALICE, "A1")) == [MediaKey(0, K2)]
    assert inbound.latest((ALICE, "A1")) == (0, T0 + 10)


def test_an_older_key_arriving_late_is_dropped() -> None:
    """OutdatedKeyFilter: after a quick leave/rejoin two index-0 keys are around."""
    inbound = InboundKeys()
    assert inbound.add(msg(0, K2), T0 + 10)
    assert not inbound.add(msg(0, K1), T0 + 5)
    assert inbound.keys_of((ALICE, "A1")) == [MediaKey(0, K2)]


def test_indexes_and_devices_are_kept_apart() -> None:
    inbound = InboundKeys()
    inbound.add(msg(0, K1), T0)
    inbound.add(msg(1, K2), T0 + 1)
    inbound.add(msg(0, K3, device="A2"), T0 + 2)
    assert inbound.keys_of((ALICE, "A1")) == [MediaKey(0, K1), MediaKey(1, K2)]
    assert inbound.keys_of((ALICE, "A2")) == [MediaKey(0, K3)]
    assert inbound.keys_of((BOB, "B1")) == []


def test_keys_are_held_until_the_membership_appears() -> None:
    inbound = InboundKeys()
    inbound.add(msg(0, K1), T0)  # the key came before Alice's membership
    calls = RoomCalls(ROOM)
    assert inbound.bound({}) == [] and inbound.waiting({}) == [(ALICE, "A1")]
    calls.apply_state(state_member(ALICE, "A1"), T0 + 100)
    members = devices_of(calls)
    # Bound to js-sdk's `user:device` and to the MSC4195 hash of (user, device, member id),
    # which a homeserver-issued token may carry (MSC4195): whichever she has.
    member_id = f"{ALICE}:A1"
    assert inbound.bound(members) == [
        (f"{ALICE}:A1", MediaKey(0, K1)),
        (livekit_identity(ALICE, "A1", member_id), MediaKey(0, K1)),
    ]
    assert inbound.waiting(members) == []


def test_held_keys_expire_and_memory_is_bounded() -> None:
    inbound = InboundKeys(hold_ms=1000, max_devices=2)
    inbound.add(msg(0, K1), T0)
    assert inbound.prune({}, T0 + 999) == []
    assert inbound.prune({}, T0 + 1000) == [(ALICE, "A1")]
    inbound.add(msg(0, K1, device="D1"), T0)
    inbound.add(msg(0, K1, device="D2"), T0 + 1)
    inbound.add(msg(0, K1, device="D3"), T0 + 2)  # evicts the least recent sender
    assert sorted(inbound.devices()) == [(ALICE, "D2"), (ALICE, "D3")]
    members = {(ALICE, "D2"): MemberDevice(ALICE, "D2", "x", 0)}
    assert inbound.prune(members, T0 + 10_000) == [(ALICE, "D3")]  # members' keys stay


def test_a_full_store_never_evicts_devices_in_the_call() -> None:
    """Review L7: eviction was by age alone, so a flood of keys from strangers pushed out the
    key of someone talking in the call (the bot could no longer decrypt them)."""
    inbound = InboundKeys(max_devices=2)
    in_call = {(ALICE, "A1")}
    inbound.add(msg(0, K1), T0, in_call)  # Alice, in the call, the oldest sender
    inbound.add(msg(0, K2, user=BOB, device="B1"), T0 + 1, in_call)
    inbound.add(msg(0, K3, user=CAROL, device="C1"), T0 + 2, in_call)  # evicts Bob, not Alice
    assert sorted(inbound.devices()) == [(ALICE, "A1"), (CAROL, "C1")]
    both = {(ALICE, "A1"), (CAROL, "C1")}
    assert not inbound.add(msg(0, K2, user=BOB, device="B2"), T0 + 3, both)  # refused
    assert inbound.keys_of((ALICE, "A1")) == [MediaKey(0, K1)]


# -- the bot's own key ------------------------------------------------------------------------
A = (ALICE, "A1", T0)
B = (BOB, "B1", T0 + 1)
C = (CAROL, "C1", T0 + 2)


def counting_random() -> Callable[[int], bytes]:
    n = itertools.count(1)
    return lambda size: bytes([next(n) % 256]) * size


def done(out: OutboundKeys, r: Rollout, now: int) -> MediaKey | None:
    """Report the rollout sent and, if it switches, run the clock to its switch."""
    at = out.sent(r, now)
    if at is None:
        return None
    assert at == now + USE_KEY_DELAY_MS
    assert out.switch_due(at - 1) is None
    return out.switch_due(at)


def test_join_index_0_used_at_once_and_sent_to_everyone() -> None:
    out = OutboundKeys(random_bytes=counting_random())
    r = out.update([A, B], T0)
    assert r is not None and r.key.index == 0 and not r.switch and not r.rotated
    assert r.targets == (A, B)
    assert out.in_use == r.key  # used at once, before anyone has it
    assert done(out, r, T0) is None and not out.busy


def test_alone_at_first_the_key_is_made_and_used() -> None:
    out = OutboundKeys()
    assert out.update([], T0) is None
    assert out.in_use is not None and out.in_use.index == 0 and not out.busy


def test_a_joiner_within_the_grace_period_gets_the_current_key() -> None:
    out = OutboundKeys(random_bytes=counting_random())
    first = out.update([A], T0)
    assert first is not None
    done(out, first, T0)
    r = out.update([A, B], T0 + GRACE_MS - 1)
    assert r is not None and r.key == first.key and r.targets == (B,)
    assert not r.switch and not r.rotated
    assert done(out, r, T0 + GRACE_MS) is None and out.in_use == first.key


def test_a_joiner_after_the_grace_period_rotates() -> None:
    out = OutboundKeys(random_bytes=counting_random())
    first = out.update([A], T0)
    assert first is not None
    done(out, first, T0)
    r = out.update([A, B], T0 + GRACE_MS)
    assert r is not None and r.rotated and r.switch
    assert r.key.index == 1 and r.key.key != first.key.key and r.targets == (A, B)
    assert out.in_use == first.key  # not before the delay
    assert done(out, r, T0 + GRACE_MS) == r.key and out.in_use == r.key


def test_a_leave_rotates_sends_to_everyone_left_and_switches_1_s_later() -> None:
    out = OutboundKeys(random_bytes=counting_random())
    r0 = out.update([A, B, C], T0)
    assert r0 is not None
    done(out, r0, T0)
    r = out.update([A, C], T0 + 5)  # bob left, well within the grace period
    assert r is not None and r.rotated and r.switch and r.key.index == 1
    assert r.targets == (A, C)
    at = out.sent(r, T0 + 50)
    assert at == T0 + 50 + USE_KEY_DELAY_MS and out.busy
    assert out.switch_due(T0 + 50 + USE_KEY_DELAY_MS - 1) is None
    assert out.switch_due(at) == r.key and not out.busy


def test_one_rollout_at_a_time_further_requests_coalesce() -> None:
    out = OutboundKeys(random_bytes=counting_random())
    r0 = out.update([A, B, C], T0)
    assert r0 is not None
    done(out, r0, T0)
    r1 = out.update([A, B], T0 + 1)  # carol left: rotation to 1 starts
    assert r1 is not None and r1.key.index == 1
    # While it runs: two more changes, no second rollout, one more run remembered.
    assert out.update([A], T0 + 2) is None
    assert out.update([A], T0 + 3) is None
    assert out.again
    at = out.sent(r1, T0 + 10)
    assert at is not None and out.switch_due(at) == r1.key
    r2 = out.update([A], at)  # the coalesced run: bob's leave rotates once more
    assert r2 is not None and r2.key.index == 2 and r2.targets == (A,) and not out.again


def test_the_index_wraps_from_255_to_0() -> None:
    """Bob leaves (a rotation) and comes back within the grace period (no rotation), 256
    times: the key ring's index goes 1, 2 … 255, then 0 again."""
    out = OutboundKeys(random_bytes=counting_random())
    first = out.update([A, B], T0)
    assert first is not None
    done(out, first, T0)
    now, seen = T0, []
    for _ in range(INDEX_COUNT):
        now += 10
        left = out.update([A], now)
        assert left is not None and left.rotated and left.switch
        assert done(out, left, now) == left.key
        seen.append(left.key.index)
        now += 10
        back = out.update([A, B], now)
        assert back is not None and back.targets == (B,) and not back.rotated
        assert done(out, back, now) is None
    assert seen == [*range(1, INDEX_COUNT), 0]
    assert out.in_use is not None and out.in_use.index == 0 and out.rotations == INDEX_COUNT


def test_index_255_then_0_directly() -> None:
    out = OutboundKeys()
    r = out.update([A, B], T0)
    assert r is not None
    done(out, r, T0)
    assert out.current is not None
    out.current.key = MediaKey(255, K1)  # as after 255 rotations
    out.in_use = out.current.key
    r = out.update([A], T0 + 1)
    assert r is not None and r.key.index == 0 and r.switch
    assert done(out, r, T0 + 1) == r.key


def test_a_recreated_membership_is_a_joiner() -> None:
    """js-sdk: another createdTs for the same user and device resets its sharedWith entry."""
    out = OutboundKeys(random_bytes=counting_random())
    r = out.update([A, B], T0)
    assert r is not None
    done(out, r, T0)
    b2 = (BOB, "B1", T0 + 500)  # bob's Element Call reloaded: a new membership
    r = out.update([A, b2], T0 + 600)
    assert r is not None and r.targets == (b2,) and not r.rotated  # not a leave
    done(out, r, T0 + 600)
    r = out.update([A, b2], T0 + GRACE_MS + 1)
    assert r is None  # nothing changed


def test_a_failed_rollout_is_tried_again() -> None:
    out = OutboundKeys(random_bytes=counting_random())
    r = out.update([A, B], T0)
    assert r is not None
    out.failed(r)
    assert not out.busy
    again = out.update([A, B], T0 + 1)
    assert again is not None and again.key == r.key and again.targets == (A, B)


def test_devices_not_reached_are_joiners_next_time() -> None:
    out = OutboundKeys(random_bytes=counting_random())
    r = out.update([A, B], T0)
    assert r is not None
    assert out.sent(r, T0, delivered=[A]) is None
    again = out.update([A, B], T0 + 1)
    assert again is not None and again.targets == (B,) and not again.rotated


def test_a_key_made_while_nobody_was_there_goes_to_the_next_joiner_and_is_used() -> None:
    out = OutboundKeys(random_bytes=counting_random())
    r = out.update([A], T0)
    assert r is not None
    done(out, r, T0)
    assert out.update([], T0 + 1) is None  # alice left: a new key, but nobody to send it to
    assert out.current is not None and out.current.key.index == 1
    r = out.update([B], T0 + 2)
    assert r is not None and r.key.index == 1 and r.targets == (B,) and r.switch
    assert done(out, r, T0 + 2) == r.key


@given(st.lists(st.sets(st.sampled_from([A, B, C])), min_size=1, max_size=30))
def test_after_any_sequence_everyone_present_has_the_key_in_use(steps: list[set[Any]]) -> None:
    """Whatever the joins and leaves (each rollout completing), everyone in the call at the
    end has been sent the key the bot's sender uses."""
    out = OutboundKeys(random_bytes=counting_random())
    now = T0
    for members in steps:
        now += 3000
        r = out.update(members, now)
        while r is not None:
            done(out, r, now)
            now += USE_KEY_DELAY_MS
            r = out.update(members, now)
    assert out.current is not None and out.in_use is not None
    final = steps[-1]
    if final:
        assert out.in_use == out.current.key
        assert final <= out.current.shared
