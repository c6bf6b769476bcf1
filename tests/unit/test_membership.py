"""Parsing call memberships of every shape, and building the content the bot sends."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtcbot.rtc.membership import (
    CALL_MEMBER_TYPE,
    DEFAULT_EXPIRES_MS,
    MAX_STICKY_DURATION_MS,
    RTC_MEMBER_TYPE,
    Membership,
    ParseResult,
    Transport,
    parse_state_event,
    parse_sticky_event,
)
from rtcbot.rtc.own_content import livekit_transport, session_content
from rtcbot.rtc.state_keys import make_state_key, parse_state_key

T0 = 1_760_000_000_000
BOT = "@bot:example.org"
SFU = "https://rtc.example.org/livekit/jwt"
ROOM = "!room:example.org"

# The EC compatibility-mode first join from the protocol reference (§2.3).
EC_CONTENT: dict[str, Any] = {
    "application": "m.call",
    "call_id": "",
    "scope": "m.room",
    "device_id": "BOTDEVICE",
    "membershipID": "@bot:example.org:BOTDEVICE",
    "expires": 14400000,
    "m.call.intent": "audio",
    "focus_active": {"type": "livekit", "focus_selection": "multi_sfu"},
    "foci_preferred": [{"type": "livekit", "livekit_service_url": SFU, "livekit_alias": ROOM}],
}

# The sticky membership from §2.4 (EC matrix_2_0 mode).
STICKY_CONTENT: dict[str, Any] = {
    "slot_id": "m.call#ROOM",
    "application": {"type": "m.call", "m.call.intent": "video"},
    "member": {"user_id": BOT, "device_id": "BOTDEVICE", "id": "0b5e0e1c-uuid"},
    "rtc_transports": [{"type": "livekit", "livekit_service_url": SFU}],
    "versions": [],
    "msc4354_sticky_key": "0b5e0e1c-uuid",
}


def state_event(
    content: Any,
    state_key: str = "_@bot:example.org_BOTDEVICE_m.call",
    sender: str = BOT,
    ts: int = T0,
) -> dict[str, Any]:
    return {
        "type": CALL_MEMBER_TYPE,
        "state_key": state_key,
        "sender": sender,
        "content": content,
        "origin_server_ts": ts,
        "event_id": "$join",
    }


def sticky_event(content: Any, sender: str = BOT, ts: int = T0, **extra: Any) -> dict[str, Any]:
    event = {
        "type": RTC_MEMBER_TYPE,
        "sender": sender,
        "content": content,
        "origin_server_ts": ts,
        "event_id": "$sticky",
        "msc4354_sticky": {"duration_ms": 3_600_000},
    }
    event.update(extra)
    return event


def only(result: ParseResult) -> Membership:
    assert result.status == "ok", result.reason
    assert len(result.memberships) == 1
    return result.memberships[0]


# --- session state shape ---------------------------------------------------------------------


def test_element_call_first_join_parses_to_the_room_call() -> None:
    result = parse_state_event(state_event(EC_CONTENT))
    m = only(result)
    assert result.source == ("state", "", "_@bot:example.org_BOTDEVICE_m.call")
    assert (m.user_id, m.device_id) == (BOT, "BOTDEVICE")
    assert (m.application, m.slot_id, m.call_id) == ("m.call", "m.call#ROOM", "")
    assert m.is_room_call
    assert m.kind == "session"
    assert m.intent == "audio"
    assert m.membership_id == "@bot:example.org:BOTDEVICE"
    assert m.key == (BOT, "BOTDEVICE", "@bot:example.org:BOTDEVICE")
    # No created_ts on a first join: the event's own timestamp is the start.
    assert m.created_ts == T0
    assert m.expires_ms == 14_400_000
    assert m.expires_at == T0 + 14_400_000
    assert m.focus_active == {"type": "livekit", "focus_selection": "multi_sfu"}
    assert m.transports == (Transport("livekit", SFU, ROOM, raw={}),)
    assert m.transports[0].raw["livekit_alias"] == ROOM
    assert m.state_key == "_@bot:example.org_BOTDEVICE_m.call"
    assert m.event_id == "$join"
    assert m.rtc_backend_identity == "@bot:example.org:BOTDEVICE"


def test_expiry_counts_from_created_ts_and_is_inclusive() -> None:
    content = {**EC_CONTENT, "created_ts": T0 - 1000, "expires": 5000}
    m = only(parse_state_event(state_event(content, ts=T0 + 3000)))
    assert m.created_ts == T0 - 1000
    assert m.expires_at == T0 + 4000
    assert not m.is_expired(T0 + 3999)
    assert m.is_expired(T0 + 4000)


def test_missing_expires_defaults_to_four_hours() -> None:
    content = {k: v for k, v in EC_CONTENT.items() if k != "expires"}
    m = only(parse_state_event(state_event(content)))
    assert m.expires_ms == DEFAULT_EXPIRES_MS
    assert m.expires_at == T0 + 4 * 3600 * 1000


def test_missing_membership_id_defaults_to_user_and_device() -> None:
    content = {k: v for k, v in EC_CONTENT.items() if k != "membershipID"}
    assert only(parse_state_event(state_event(content))).membership_id == f"{BOT}:BOTDEVICE"


@pytest.mark.parametrize(
    "state_key",
    [
        "@bot:example.org_BOTDEVICE_m.call",  # MSC3757 rooms: no leading underscore
        "_@bot:example.org_BOTDEVICE",  # older js-sdk: no application part
        "_@bot:example.org_BOTDEVICE_m.callbreakout",  # slot part glued to the application
    ],
)
def test_other_state_key_forms_of_the_sender_are_accepted(state_key: str) -> None:
    assert parse_state_event(state_event(EC_CONTENT, state_key=state_key)).ok


def test_a_device_id_with_underscores_is_owned_by_its_sender() -> None:
    content = {**EC_CONTENT, "device_id": "MY_PHONE"}
    result = parse_state_event(state_event(content, state_key=f"_{BOT}_MY_PHONE_m.call"))
    assert only(result).device_id == "MY_PHONE"


@pytest.mark.parametrize(
    ("state_key", "sender", "device"),
    [
        ("_@alice:example.org_BOTDEVICE_m.call", BOT, "BOTDEVICE"),  # someone else's key
        ("_@bot:example.org_OTHER_m.call", BOT, "BOTDEVICE"),  # another device's key
        ("_@bot:example.org_BOTDEVICEX_m.call", BOT, "BOTDEVICE"),  # prefix is not enough
        ("_@bot:example.org.evil_BOTDEVICE_m.call", BOT, "BOTDEVICE"),
        ("something-else", BOT, "BOTDEVICE"),
    ],
)
def test_memberships_under_keys_the_sender_does_not_own_are_invalid(
    state_key: str, sender: str, device: str
) -> None:
    content = {**EC_CONTENT, "device_id": device}
    result = parse_state_event(state_event(content, state_key=state_key, sender=sender))
    assert result.invalid
    assert "does not belong" in result.reason
    assert result.source == ("state", "", state_key)  # it still replaces the old state


def test_empty_content_is_a_leave_even_from_a_moderator() -> None:
    key = "_@alice:example.org_PHONE_m.call"
    result = parse_state_event(state_event({}, state_key=key, sender="@mod:example.org"))
    assert result.left
    assert result.memberships == ()
    assert result.source == ("state", "", key)


def test_other_applications_and_slots_get_their_own_slot_ids() -> None:
    widget = {**EC_CONTENT, "application": "io.element.widget"}
    m = only(parse_state_event(state_event(widget)))
    assert (m.application, m.slot_id) == ("io.element.widget", "io.element.widget#ROOM")
    breakout = {**EC_CONTENT, "call_id": "breakout"}
    m = only(parse_state_event(state_event(breakout)))
    assert (m.slot_id, m.call_id, m.is_room_call) == ("m.call#breakout", "breakout", False)


def test_float_timestamps_from_javascript_are_accepted() -> None:
    content = {**EC_CONTENT, "created_ts": float(T0), "expires": 1000.0}
    m = only(parse_state_event(state_event(content)))
    assert (m.created_ts, m.expires_at) == (T0, T0 + 1000)
    assert isinstance(m.created_ts, int)


REQUIRED_SESSION_FIELDS = ["device_id", "call_id", "application", "focus_active"]


@pytest.mark.parametrize("missing", REQUIRED_SESSION_FIELDS)
def test_session_content_without_a_required_field_is_invalid(missing: str) -> None:
    content = {k: v for k, v in EC_CONTENT.items() if k != missing}
    result = parse_state_event(state_event(content))
    assert result.invalid
    assert result.memberships == ()
    assert result.reason


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("device_id", 5),
        ("device_id", ""),
        ("device_id", None),
        ("call_id", None),
        ("call_id", ["x"]),
        ("application", {"type": "m.call"}),
        ("focus_active", "livekit"),
        ("focus_active", {"type": 1}),
        ("focus_active", {}),
        ("foci_preferred", {"type": "livekit"}),
        ("foci_preferred", "livekit"),
        ("foci_preferred", [None]),
        ("foci_preferred", [{"type": None}]),
        ("foci_preferred", [["livekit"]]),
        ("created_ts", True),  # bool is an int in Python, not a number in JSON
        ("created_ts", "1760000000000"),
        ("created_ts", -1),
        ("created_ts", 2**64),
        ("created_ts", math.nan),
        ("created_ts", math.inf),
        ("created_ts", None),
        ("expires", False),
        ("expires", -5),
        ("expires", 1e300),
        ("scope", 1),
        ("m.call.intent", ["video"]),
        ("membershipID", 7),
        ("capabilities", "audio"),
        ("capabilities", [1]),
    ],
)
def test_session_content_with_a_wrong_type_is_invalid(name: str, value: Any) -> None:
    result = parse_state_event(state_event({**EC_CONTENT, name: value}))
    assert result.invalid, (name, value)
    assert result.memberships == ()


@pytest.mark.parametrize(
    "content",
    [
        {"application": "m.call"},  # a single key is never a membership
        {"call_id": "", "device_id": "D"},  # no application
        {"foo": 1, "bar": 2},
        "not an object",
        ["application"],
        None,
        42,
    ],
)
def test_non_membership_content_is_invalid(content: Any) -> None:
    assert parse_state_event(state_event(content)).invalid


@pytest.mark.parametrize(
    "event",
    [
        None,
        "event",
        [],
        {},
        {**state_event(EC_CONTENT), "type": "m.room.member"},
        {**state_event(EC_CONTENT), "sender": "bot"},
        {**state_event(EC_CONTENT), "sender": None},
        {**state_event(EC_CONTENT), "origin_server_ts": "now"},
        {**state_event(EC_CONTENT), "origin_server_ts": True},
        {k: v for k, v in state_event(EC_CONTENT).items() if k != "origin_server_ts"},
        {k: v for k, v in state_event(EC_CONTENT).items() if k != "state_key"},
        {**state_event(EC_CONTENT), "state_key": 5},
    ],
)
def test_malformed_event_envelopes_are_invalid(event: Any) -> None:
    result = parse_state_event(event)
    assert result.invalid
    assert result.reason


@pytest.mark.parametrize(
    "device",
    ["\ud800", "DEV\x00", "ДЕВАЙС", "\u202eEVIL", "📱", "a" * 5000, " "],
)
def test_unicode_oddities_in_ids_never_break_parsing(device: str) -> None:
    content = {**EC_CONTENT, "device_id": device}
    m = only(parse_state_event(state_event(content, state_key=f"_{BOT}_{device}_m.call")))
    assert m.device_id == device
    assert m.rtc_backend_identity == f"{BOT}:{device}"
    sticky = _sticky_with(member={"user_id": BOT, "device_id": device, "id": device})
    assert only(parse_sticky_event(sticky_event(sticky), now_ms=T0)).rtc_backend_identity
    # Someone else's weird key is still someone else's.
    assert parse_state_event(state_event(content, state_key=f"_{ALICE}_{device}_m.call")).invalid


# --- legacy per-user array (read only) --------------------------------------------------------

# What the Flutter client in seed 002 sends under the user ID as state key.
FLUTTER_ENTRY: dict[str, Any] = {
    "application": "m.call",
    "call_id": "",
    "scope": "m.room",
    "device_id": "FLUTTERDEV",
    "expires": 3600000,
    "expires_ts": T0 + 3600000,
    "membershipID": "k2j4h5g6f7d8",
    "foci_active": [{"type": "livekit", "livekit_alias": ROOM, "livekit_service_url": SFU}],
}
ALICE = "@alice:example.org"


def test_legacy_array_from_the_flutter_client_is_read() -> None:
    result = parse_state_event(state_event({"memberships": [FLUTTER_ENTRY]}, ALICE, ALICE))
    m = only(result)
    assert m.kind == "legacy"
    assert (m.user_id, m.device_id, m.slot_id) == (ALICE, "FLUTTERDEV", "m.call#ROOM")
    assert m.membership_id == "k2j4h5g6f7d8"
    assert m.expires_at == T0 + 3600000  # from expires_ts
    assert m.transports[0].livekit_service_url == SFU
    assert m.focus_active is None
    assert result.source == ("state", "", ALICE)


def test_legacy_expires_ts_is_absolute_and_wins_over_expires() -> None:
    # The Flutter client stamps expires_ts from its own clock, so it differs from ts + expires.
    entry = {**FLUTTER_ENTRY, "expires_ts": T0 + 1_800_000}
    m = only(parse_state_event(state_event({"memberships": [entry]}, ALICE, ALICE)))
    assert m.expires_at == T0 + 1_800_000
    assert m.is_expired(T0 + 1_800_000)


def test_legacy_entry_without_expires_ts_uses_created_ts_plus_expires() -> None:
    entry = {k: v for k, v in FLUTTER_ENTRY.items() if k != "expires_ts"}
    entry["created_ts"] = T0 - 10
    m = only(parse_state_event(state_event({"memberships": [entry]}, ALICE, ALICE)))
    assert m.expires_at == T0 - 10 + 3600000


def test_legacy_array_keeps_every_valid_entry_and_reports_the_rest() -> None:
    second = {**FLUTTER_ENTRY, "device_id": "TABLET", "membershipID": "other"}
    broken = {**FLUTTER_ENTRY, "device_id": 3}
    content = {"memberships": [FLUTTER_ENTRY, broken, second, "junk"]}
    result = parse_state_event(state_event(content, ALICE, ALICE))
    assert result.ok
    assert [m.device_id for m in result.memberships] == ["FLUTTERDEV", "TABLET"]
    assert len(result.skipped) == 2
    assert result.skipped[0].startswith("memberships[1]")


def test_empty_legacy_array_is_a_leave() -> None:
    assert parse_state_event(state_event({"memberships": []}, ALICE, ALICE)).left


@pytest.mark.parametrize(
    "content",
    [
        {"memberships": "all"},
        {"memberships": None},
        {"memberships": {"0": FLUTTER_ENTRY}},
        {"memberships": [None, 1, "x"]},
        {"memberships": [{**FLUTTER_ENTRY, "expires_ts": True}]},
        {"memberships": [{**FLUTTER_ENTRY, "foci_active": {"type": "livekit"}}]},
    ],
)
def test_broken_legacy_arrays_are_invalid(content: Any) -> None:
    assert parse_state_event(state_event(content, ALICE, ALICE)).invalid


def test_legacy_array_under_someone_elses_user_id_is_invalid() -> None:
    result = parse_state_event(state_event({"memberships": [FLUTTER_ENTRY]}, ALICE, BOT))
    assert result.invalid


# --- sticky (MSC4354) --------------------------------------------------------------------------


def test_sticky_membership_from_element_call_parses() -> None:
    result = parse_sticky_event(sticky_event(STICKY_CONTENT), now_ms=T0 + 500)
    m = only(result)
    assert result.source == ("sticky", BOT, "0b5e0e1c-uuid")
    assert m.kind == "sticky"
    assert (m.application, m.slot_id, m.call_id) == ("m.call", "m.call#ROOM", "")
    assert m.intent == "video"
    assert m.membership_id == "0b5e0e1c-uuid"
    assert m.sticky_key == "0b5e0e1c-uuid"
    assert m.created_ts == T0
    assert m.expires_ms is None
    # min(now, sent) + duration
    assert m.expires_at == T0 + 3_600_000
    assert m.transports[0].livekit_service_url == SFU
    assert m.state_key is None
    # Sticky identities are hashed (MSC4195), never "user:device".
    assert m.rtc_backend_identity != f"{BOT}:BOTDEVICE"
    assert len(m.rtc_backend_identity) == 43


def test_sticky_expiry_prefers_the_servers_remaining_ttl() -> None:
    event = sticky_event(STICKY_CONTENT, unsigned={"msc4354_sticky_duration_ttl_ms": 120_000})
    assert only(parse_sticky_event(event, now_ms=T0 + 9000)).expires_at == T0 + 9000 + 120_000


def test_sticky_expiry_is_capped_at_one_hour_and_uses_the_earlier_clock() -> None:
    event = sticky_event(STICKY_CONTENT, msc4354_sticky={"duration_ms": 10 * 3_600_000})
    # Our clock behind the server's: start from our clock.
    assert only(parse_sticky_event(event, now_ms=T0 - 50)).expires_at == T0 - 50 + 3_600_000
    event = sticky_event(STICKY_CONTENT, unsigned={"msc4354_sticky_duration_ttl_ms": 10**9})
    assert only(parse_sticky_event(event, now_ms=T0)).expires_at == T0 + MAX_STICKY_DURATION_MS


def test_sticky_event_without_stickiness_info_lives_one_hour() -> None:
    event = sticky_event(STICKY_CONTENT)
    del event["msc4354_sticky"]
    assert only(parse_sticky_event(event, now_ms=T0)).expires_at == T0 + 3_600_000
    event["msc4354_sticky"] = {"duration_ms": 60_000}
    assert only(parse_sticky_event(event, now_ms=T0)).expires_at == T0 + 60_000


def test_sticky_content_with_only_the_key_is_a_leave() -> None:
    result = parse_sticky_event(sticky_event({"msc4354_sticky_key": "k1"}), now_ms=T0)
    assert result.left
    assert result.source == ("sticky", BOT, "k1")
    assert result.origin_server_ts == T0


def test_sticky_newer_transports_shape_is_accepted() -> None:
    content = {k: v for k, v in STICKY_CONTENT.items() if k != "rtc_transports"}
    content["transports"] = {
        "published": [{"type": "livekit", "livekit_service_url": SFU}],
        "can_subscribe": ["livekit"],
    }
    assert only(parse_sticky_event(sticky_event(content), now_ms=T0)).transports[0].type == (
        "livekit"
    )


def test_sticky_both_keys_equal_is_fine() -> None:
    content = {**STICKY_CONTENT, "sticky_key": "0b5e0e1c-uuid"}
    assert parse_sticky_event(sticky_event(content), now_ms=T0).ok


def _sticky_with(**changes: Any) -> dict[str, Any]:
    content = copy.deepcopy(STICKY_CONTENT)
    for name, value in changes.items():
        if value is _DROP:
            content.pop(name, None)
        else:
            content[name] = value
    return content


_DROP = object()


@pytest.mark.parametrize(
    "content",
    [
        _sticky_with(slot_id="m.call"),  # no "#"
        _sticky_with(slot_id="m.call#a#b"),  # two "#"
        _sticky_with(slot_id="io.other#ROOM"),  # not the application's slot
        _sticky_with(slot_id=5),
        _sticky_with(application={"type": "m.call#x"}, slot_id="m.call#x#ROOM"),
        _sticky_with(application="m.call"),
        _sticky_with(application={"type": "m.call", "m.call.intent": 1}),
        _sticky_with(member={"user_id": "@mallory:evil.org", "device_id": "D", "id": "x"}),
        _sticky_with(member={"user_id": BOT, "device_id": 5, "id": "x"}),
        _sticky_with(member={"user_id": BOT, "device_id": "D"}),
        _sticky_with(member=[BOT, "D", "x"]),
        _sticky_with(rtc_transports={"type": "livekit"}),
        _sticky_with(rtc_transports=[{"url": SFU}]),
        _sticky_with(rtc_transports=_DROP),
        _sticky_with(rtc_transports=_DROP, transports={"published": [{"type": 1}]}),
        _sticky_with(rtc_transports=_DROP, transports={"published": [], "can_subscribe": [1]}),
        _sticky_with(versions=_DROP),
        _sticky_with(versions=[1]),
        _sticky_with(msc4354_sticky_key=_DROP),
        _sticky_with(msc4354_sticky_key=""),
        _sticky_with(msc4354_sticky_key=7),
        _sticky_with(sticky_key="different"),
        _sticky_with(**{"m.relates_to": {"event_id": "$x", "rel_type": "m.thread"}}),
        _sticky_with(**{"m.relates_to": "yes"}),
    ],
)
def test_sticky_content_failing_js_sdk_checks_is_invalid(content: dict[str, Any]) -> None:
    result = parse_sticky_event(sticky_event(content), now_ms=T0)
    assert result.invalid
    assert result.memberships == ()


def test_sticky_relation_reference_is_accepted() -> None:
    content = _sticky_with(**{"m.relates_to": {"event_id": "$join", "rel_type": "m.reference"}})
    assert parse_sticky_event(sticky_event(content), now_ms=T0).ok


def test_sticky_parser_rejects_state_events_and_vice_versa() -> None:
    assert parse_sticky_event(state_event(EC_CONTENT), now_ms=T0).invalid
    assert parse_state_event({**sticky_event(STICKY_CONTENT), "state_key": ""}).invalid


# --- state keys and what we send --------------------------------------------------------------


def test_make_state_key_matches_js_sdk() -> None:
    assert make_state_key(BOT, "BOTDEVICE") == "_@bot:example.org_BOTDEVICE_m.call"
    assert make_state_key(BOT, "BOTDEVICE", slot="ROOM") == "_@bot:example.org_BOTDEVICE_m.call"
    assert make_state_key(BOT, "D", leading_underscore=False) == "@bot:example.org_D_m.call"
    assert make_state_key(BOT, "D", slot="foo") == "_@bot:example.org_D_m.callfoo"
    assert make_state_key(BOT, "D", "io.element.widget") == "_@bot:example.org_D_io.element.widget"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("_@bot:example.org_BOTDEVICE_m.call", (BOT, "BOTDEVICE", "m.call")),
        ("@bot:example.org_BOTDEVICE_m.call", (BOT, "BOTDEVICE", "m.call")),
        ("_@a_b_c:example.org_DEV_m.call", ("@a_b_c:example.org", "DEV", "m.call")),
        ("_@bot:example.org:8448_DEV_m.call", ("@bot:example.org:8448", "DEV", "m.call")),
        ("_@bot:[::1]:8448_DEV_m.call", ("@bot:[::1]:8448", "DEV", "m.call")),
        ("_@bot:example.org_MY_PHONE_m.call", (BOT, "MY_PHONE", "m.call")),
        ("_@bot:example.org_DEV_m.callbreakout", (BOT, "DEV", "m.callbreakout")),
        ("_@bot:example.org_DEV_io.element.widget", (BOT, "DEV", "io.element.widget")),
        ("_@bot:example.org_DEV", (BOT, "DEV", "")),
        ("@bot:example.org", None),  # the legacy key is just a user ID
        ("_@bot:example.org_", None),
        ("_@bot:example.org__m.call", None),
        ("_bot:example.org_DEV_m.call", None),
        ("_@:example.org_DEV_m.call", None),
        ("_@bot_DEV_m.call", None),
        ("", None),
        ("_", None),
    ],
)
def test_parse_state_key(key: str, expected: tuple[str, str, str] | None) -> None:
    assert parse_state_key(key) == expected


def test_session_content_is_exactly_what_element_call_sends() -> None:
    content = session_content(BOT, "BOTDEVICE", [livekit_transport(SFU, ROOM)])
    assert content == EC_CONTENT
    assert list(content) == list(EC_CONTENT)  # same field order as js-sdk


def test_session_content_refresh_carries_created_ts_last() -> None:
    content = session_content(
        BOT,
        "BOTDEVICE",
        [livekit_transport(SFU)],
        intent=None,
        expires_ms=8 * 3600_000,
        created_ts=T0,
    )
    assert list(content)[-1] == "created_ts"
    assert "m.call.intent" not in content
    assert content["foci_preferred"] == [{"type": "livekit", "livekit_service_url": SFU}]
    m = only(parse_state_event(state_event(content, ts=T0 + 9_000_000)))
    assert m.created_ts == T0
    assert m.expires_at == T0 + 8 * 3600_000


@given(
    user=st.from_regex(r"@[a-z0-9._=\-/]{1,12}:[a-z0-9.\-]{1,12}(:[0-9]{1,5})?", fullmatch=True),
    device=st.from_regex(r"[A-Za-z0-9]{1,16}", fullmatch=True),
    slot=st.sampled_from(["", "ROOM", "breakout", "x1"]),
    underscore=st.booleans(),
)
def test_state_keys_round_trip(user: str, device: str, slot: str, underscore: bool) -> None:
    key = make_state_key(user, device, slot=slot, leading_underscore=underscore)
    expected_slot = "" if slot in ("", "ROOM") else slot
    assert parse_state_key(key) == (user, device, f"m.call{expected_slot}")
    content = session_content(user, device, [livekit_transport(SFU)], call_id=expected_slot)
    event = state_event(content, state_key=key, sender=user)
    m = only(parse_state_event(event))
    assert (m.user_id, m.device_id) == (user, device)
    assert m.slot_id == f"m.call#{expected_slot or 'ROOM'}"


# --- hostile input: nothing may raise ---------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
# Keys the parsers look at, so random dicts actually hit the validation paths.
INTERESTING_KEYS = sorted(
    set(EC_CONTENT)
    | set(STICKY_CONTENT)
    | set(FLUTTER_ENTRY)
    | {"memberships", "created_ts", "sticky_key", "transports", "m.relates_to", "capabilities"}
)
hostile_dicts = st.dictionaries(
    st.sampled_from(INTERESTING_KEYS) | st.text(max_size=8), json_values, max_size=8
)


def assert_well_typed(result: ParseResult) -> None:
    assert isinstance(result, ParseResult)
    assert result.status in ("ok", "left", "invalid")
    assert isinstance(result.reason, str)
    if result.status == "ok":
        assert result.memberships
    else:
        assert result.memberships == ()
    if result.status == "invalid":
        assert result.reason
    for m in result.memberships:
        assert isinstance(m, Membership)
        for text in (m.user_id, m.device_id, m.application, m.slot_id, m.membership_id):
            assert isinstance(text, str)
            assert text
        assert m.device_id
        assert isinstance(m.created_ts, int) and not isinstance(m.created_ts, bool)
        assert m.expires_at is None or isinstance(m.expires_at, int)
        assert m.intent is None or isinstance(m.intent, str)
        assert all(isinstance(t, Transport) and isinstance(t.type, str) for t in m.transports)
        assert isinstance(m.is_expired(T0), bool)
        hash(m)  # frozen and hashable despite holding raw mappings


HYPOTHESIS = settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])


@HYPOTHESIS
@given(content=json_values)
def test_random_state_content_never_raises(content: Any) -> None:
    assert_well_typed(parse_state_event(state_event(content)))


@HYPOTHESIS
@given(overrides=hostile_dicts, drop=st.lists(st.sampled_from(sorted(EC_CONTENT)), max_size=3))
def test_random_fields_over_a_valid_session_never_raise(
    overrides: dict[str, Any], drop: list[str]
) -> None:
    content = {**EC_CONTENT, **overrides}
    for name in drop:
        content.pop(name, None)
    result = parse_state_event(state_event(content))
    assert_well_typed(result)
    # Whatever survives validation is the sender's own device.
    for m in result.memberships:
        assert (m.user_id, m.device_id) == (BOT, "BOTDEVICE")


@HYPOTHESIS
@given(
    entries=st.lists(hostile_dicts.map(lambda d: {**FLUTTER_ENTRY, **d}) | json_values, max_size=4)
)
def test_random_legacy_arrays_never_raise(entries: list[Any]) -> None:
    result = parse_state_event(state_event({"memberships": entries}, ALICE, ALICE))
    assert_well_typed(result)
    if not entries:
        assert result.left
    assert len(result.memberships) + len(result.skipped) == len(entries) or result.invalid


@HYPOTHESIS
@given(
    overrides=hostile_dicts,
    member=json_values,
    application=json_values,
    now=st.integers(min_value=0, max_value=2**60),
)
def test_random_sticky_content_never_raises(
    overrides: dict[str, Any], member: Any, application: Any, now: int
) -> None:
    content = {**STICKY_CONTENT, **overrides}
    assert_well_typed(parse_sticky_event(sticky_event(content), now_ms=now))
    broken = {**STICKY_CONTENT, "member": member, "application": application}
    assert_well_typed(parse_sticky_event(sticky_event(broken), now_ms=now))


@HYPOTHESIS
@given(event=st.dictionaries(st.sampled_from(sorted(state_event({}))), json_values) | json_values)
def test_random_event_envelopes_never_raise(event: Any) -> None:
    assert_well_typed(parse_state_event(event))
    assert_well_typed(parse_sticky_event(event, now_ms=T0))
    for extra in ("unsigned", "msc4354_sticky"):
        if isinstance(event, dict):
            event_with_extra = {**sticky_event(STICKY_CONTENT), extra: event}
            assert_well_typed(parse_sticky_event(event_with_extra, now_ms=T0))


FIELD_WRONG_VALUES = st.sampled_from(
    [None, True, False, -1, 2**63, 1.5e308, math.nan, "", "x", [], [1], {}, {"type": 1}]
)


@HYPOTHESIS
@given(name=st.sampled_from(REQUIRED_SESSION_FIELDS), value=FIELD_WRONG_VALUES)
def test_required_session_fields_reject_every_wrong_type(name: str, value: Any) -> None:
    if (name == "call_id" and isinstance(value, str)) or (name == "application" and value == "x"):
        return  # valid values for these fields
    result = parse_state_event(state_event({**EC_CONTENT, name: value}))
    assert result.invalid, (name, value)


@given(text=st.text(max_size=60))
def test_parse_state_key_never_raises(text: str) -> None:
    result = parse_state_key(text)
    assert result is None or all(isinstance(part, str) for part in result)
    if result is not None:
        assert result[0].startswith("@") and result[1]
