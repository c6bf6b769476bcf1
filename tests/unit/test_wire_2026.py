"""The 2026 wire (docs/COMPATIBILITY.md), shape by shape, copied field by field from the
published sources: MSC4143 "current" members (matrix-rust-rtc compat/sticky_2025.rs), js-sdk
45's full-content sticky leave (#5616), `url` transports (Synapse ≥ 1.161 config and
`/rtc/transports`), MSC4140's 409, and the MSC4195 identity vector."""

from __future__ import annotations

from typing import Any

from rtcbot.matrix.delayed_events import DelayedEventNotFound, classify_error
from rtcbot.matrix.functional_members import with_service_member
from rtcbot.matrix.transports import first_livekit
from rtcbot.rtc.identity import livekit_identity, livekit_room_alias
from rtcbot.rtc.member_fields import parse_transport
from rtcbot.rtc.membership import RTC_MEMBER_STABLE_TYPE, RTC_MEMBER_TYPE, parse_sticky_event
from rtcbot.rtc.own_content import transport_entry
from rtcbot.rtc.session import RoomCalls
from rtcbot.rtc.sfus import publishers_by_service, split_link_key
from rtcbot.rtc.slots import best_state, slot_content, slot_state

T0 = 1_760_000_000_000
ROOM = "!room:example.org"
RUST = "@rust:example.org"
SFU_WS = "wss://sfu.example.org"
SERVICE = "https://rtc.example.org/livekit/jwt"


def current_member(membership: str = "join", **over: Any) -> dict[str, Any]:
    """matrix-rust-rtc's "MSC4143 today" member: no user, no device, no versions."""
    content: dict[str, Any] = {
        "slot_id": "m.call#room",
        "msc4354_sticky_key": "rust-member-1",
        "member": {"id": "rust-member-1", "membership": membership},
        "application": {"type": "m.call"},
        "transports": {
            "published": [{"type": "livekit", "url": SFU_WS}],
            "can_subscribe": ["livekit"],
        },
    }
    content.update(over)
    return content


def event(content: dict[str, Any], kind: str = RTC_MEMBER_TYPE, ts: int = T0) -> dict[str, Any]:
    return {
        "type": kind,
        "sender": RUST,
        "content": content,
        "origin_server_ts": ts,
        "event_id": f"$e{ts}",
        "msc4354_sticky": {"duration_ms": 3_600_000},
    }


def test_the_identity_vector_of_js_sdk() -> None:
    # js-sdk computeRtcIdentityRaw("@alice:example.com","DEVICE123","memberABC")
    expected = "J+T45tGruxc+HrUOqJJlyQSV33m728Cme4+vt8/SWrU"
    assert livekit_identity("@alice:example.com", "DEVICE123", "memberABC") == expected


def test_a_current_member_is_read_with_its_device_from_the_decryption() -> None:
    for kind in (RTC_MEMBER_TYPE, RTC_MEMBER_STABLE_TYPE):
        result = parse_sticky_event(event(current_member(), kind), T0, device_hint="RUSTDEV")
        assert result.ok, result.reason
        m = result.memberships[0]
        assert (m.user_id, m.device_id, m.membership_id) == (RUST, "RUSTDEV", "rust-member-1")
        assert m.dialect == "current"
        # m.call#room is the room's call (one call with Element Call's m.call#ROOM)...
        assert m.slot_id == "m.call#ROOM" and m.is_room_call
        # ...but its LiveKit room is derived from the slot id as written.
        assert m.wire_slot_id == "m.call#room"
        assert livekit_room_alias(ROOM, m.wire_slot_id) != livekit_room_alias(ROOM)
        assert m.transports[0].url == SFU_WS and m.transports[0].key == SFU_WS
        assert m.rtc_backend_identity == livekit_identity(RUST, "RUSTDEV", "rust-member-1")


def test_current_and_element_call_members_are_one_call() -> None:
    calls = RoomCalls(ROOM)
    calls.apply_sticky(event(current_member()), T0)
    ec = event(
        {
            "slot_id": "m.call#ROOM",
            "msc4354_sticky_key": "ec-1",
            "member": {"user_id": RUST, "device_id": "ECDEV", "id": "ec-1"},
            "application": {"type": "m.call"},
            "rtc_transports": [{"type": "livekit", "livekit_service_url": SERVICE}],
            "versions": [],
        },
        ts=T0 + 1,
    )
    calls.apply_sticky(ec, T0 + 1)
    call = calls.call()
    assert call is not None and len(call.members) == 2


def test_a_sticky_leave_with_member_membership_leave_ends_the_member() -> None:
    calls = RoomCalls(ROOM)
    calls.apply_sticky(event(current_member()), T0)
    assert calls.call() is not None
    # MSC4143 current / js-sdk 45 #5616: the leave is full content, not a bare sticky key.
    leave = event(current_member("leave", leave_reason="user_left"), ts=T0 + 5)
    result = parse_sticky_event(leave, T0 + 5)
    assert result.left, result
    calls.apply_sticky(leave, T0 + 5)
    assert calls.call() is None


def test_url_transports_are_read_and_keyed_by_url() -> None:
    # Synapse 1.163.2 synapse/config/matrixrtc.py: `url` instead of, or beside, the service.
    only_url = first_livekit([{"type": "livekit", "url": SFU_WS}])
    both = first_livekit([{"type": "livekit", "url": SFU_WS, "livekit_service_url": SERVICE}])
    only_service = first_livekit([{"type": "livekit", "livekit_service_url": SERVICE + "/"}])
    assert only_url is not None and (only_url.url, only_url.livekit_service_url) == (SFU_WS, None)
    assert both is not None and (both.url, both.livekit_service_url) == (SFU_WS, SERVICE)
    assert only_service is not None and only_service.key == SERVICE and only_service.url is None
    assert both.key == SFU_WS  # SFUs are keyed by `url` where present
    # An http(s) `url` is not an SFU WebSocket; a ws service URL is no service.
    assert (
        first_livekit([{"type": "livekit", "url": "https://x", "livekit_service_url": "ws://y"}])
        is None
    )
    # The bot advertises what it found, so each client takes the field it speaks.
    assert transport_entry(both, ROOM) == {
        "type": "livekit",
        "url": SFU_WS,
        "livekit_service_url": SERVICE,
        "livekit_alias": ROOM,
    }
    assert "livekit_service_url" not in transport_entry(only_url)


def test_members_on_a_url_sfu_are_found_there() -> None:
    calls = RoomCalls(ROOM)
    calls.apply_sticky(event(current_member()), T0)
    call = calls.call()
    assert call is not None
    found = publishers_by_service(call.members.values())
    member = next(iter(call.members.values()))
    # Its SFU, and the LiveKit room of its slot as written (m.call#room: another room).
    assert found == {f"{SFU_WS} m.call#room": set(member.membership.identities)}
    assert split_link_key(f"{SFU_WS} m.call#room") == (SFU_WS, "m.call#room")
    assert split_link_key(SFU_WS) == (SFU_WS, "m.call#ROOM")
    assert parse_transport({"type": "livekit", "url": SFU_WS}, "x").key == SFU_WS


def test_a_409_on_a_finalised_delayed_event_is_read_as_gone() -> None:
    # MSC4140 (merged): restart/send of an event already sent or cancelled answers 409.
    err = classify_error(409, {"errcode": "M_UNKNOWN", "error": "Delayed event already sent"})
    assert isinstance(err, DelayedEventNotFound)


def test_slots_as_matrix_rust_rtc_reads_them() -> None:
    # crates/matrix-rtc-core/src/slot.rs: absent, not open, or no encryption in an
    # encrypted room: closed.
    assert slot_state(None, encrypted=False) == "missing"
    assert slot_state({"status": "closed", "application": {"type": "m.call"}}, False) == "closed"
    assert slot_state(slot_content(True, encrypted=False), False) == "open"
    assert slot_state(slot_content(True, encrypted=False), True) == "unencrypted"
    assert slot_content(True, encrypted=True) == {
        "status": "open",
        "application": {"type": "m.call"},
        "encryption": {"type": "m.per_member"},
    }
    assert slot_state(slot_content(True, encrypted=True), True) == "open"
    assert best_state(["missing", "open"]) == "open"
    assert best_state(["missing", "missing"]) == "missing"


def test_the_bot_joins_the_service_members_keeping_the_others() -> None:
    bot = "@bot:example.org"
    assert with_service_member(None, bot) == {"service_members": [bot]}
    kept = with_service_member({"service_members": ["@other:x", 7], "extra": 1}, bot)
    assert kept == {"service_members": ["@other:x", bot], "extra": 1}
    assert with_service_member({"service_members": [bot]}, bot) is None
    assert with_service_member({"service_members": "nonsense"}, bot) == {"service_members": [bot]}


def test_only_the_two_spellings_of_the_room_slot_are_the_room_call() -> None:
    # Any other casing would be one more LiveKit room for a recording to link to.
    odd = parse_sticky_event(event(current_member(slot_id="m.call#RoOm")), T0, "D")
    assert odd.ok and odd.memberships[0].slot_id == "m.call#RoOm"
    assert not odd.memberships[0].is_room_call


async def test_a_current_membership_never_goes_out_in_plaintext_into_an_encrypted_room() -> None:
    """The sticky membership's requests bypass mautrix's send path: without crypto, an
    encrypted room gets nothing (not the join, not the delayed leave)."""
    from types import SimpleNamespace

    import pytest

    from rtcbot.matrix.delayed_events import RequestRefused
    from rtcbot.matrix.membership_wire import StickyWire

    async def is_encrypted(_room: str) -> bool:
        return True

    sent: list[Any] = []

    async def record(*args: Any) -> str:
        sent.append(args)
        return "x"

    client = SimpleNamespace(crypto=None, state_store=SimpleNamespace(is_encrypted=is_encrypted))
    delayed = SimpleNamespace(schedule_message=record, put_message=record)
    wire = StickyWire(client, "DEV-1", {"type": "livekit", "url": SFU_WS})  # type: ignore[arg-type]
    with pytest.raises(RequestRefused):
        await wire.schedule_leave(delayed, ROOM, 8000)  # type: ignore[arg-type]
    with pytest.raises(RequestRefused):
        await wire.send(delayed, ROOM, {"member": {}})  # type: ignore[arg-type]
    assert sent == []
