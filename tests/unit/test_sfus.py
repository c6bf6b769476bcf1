"""Which SFUs a call's media is on (rtc/sfus.py) and when two LiveKit URLs are one server."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rtcbot.recording.sfus import same_sfu, service_name
from rtcbot.rtc.membership import Membership, parse_state_event, parse_sticky_event
from rtcbot.rtc.sfus import publishers_by_service, publishing_services

A = "https://a.example/livekit/jwt"
B = "https://b.example/livekit/jwt"


@dataclass(frozen=True)
class M:
    since_ms: int
    membership: Membership


def state(user: str, device: str, service: str, since: int, selection: str = "multi_sfu") -> M:
    content: dict[str, Any] = {
        "application": "m.call",
        "call_id": "",
        "scope": "m.room",
        "device_id": device,
        "expires": 3_600_000,
        "foci_preferred": [{"type": "livekit", "livekit_service_url": service}],
        "focus_active": {"type": "livekit", "focus_selection": selection},
    }
    event = {
        "type": "org.matrix.msc3401.call.member",
        "state_key": f"_{user}_{device}_m.call",
        "sender": user,
        "content": content,
        "origin_server_ts": since,
        "event_id": f"$e{since}",
    }
    result = parse_state_event(event)
    assert result.memberships, result
    return M(since, result.memberships[0])


def sticky(user: str, device: str, service: str, since: int) -> M:
    content = {
        "application": {"type": "m.call"},
        "member": {"device_id": device, "id": f"m{since}", "user_id": user},
        "msc4354_sticky_key": f"m{since}",
        "slot_id": "m.call#ROOM",
        "transports": {
            "can_subscribe": ["livekit"],
            "published": [{"type": "livekit", "livekit_service_url": service}],
        },
        "versions": [],
    }
    event = {
        "type": "org.matrix.msc4143.rtc.member",
        "sender": user,
        "content": content,
        "origin_server_ts": since,
        "event_id": f"$s{since}",
        "msc4354_sticky": {"duration_ms": 3_600_000},
    }
    result = parse_sticky_event(event, since)
    assert result.memberships, result
    return M(since, result.memberships[0])


def test_multi_sfu_members_publish_on_their_own_transport() -> None:
    members = [state("@b:b", "B1", B, 2), state("@a:a", "A1", A + "/", 1)]
    assert publishing_services(members) == [A, B]  # oldest first, trailing slash dropped


def test_sticky_members_publish_on_their_first_published_transport() -> None:
    assert publishing_services([sticky("@a:a", "A1", A, 1), sticky("@b:b", "B1", B, 2)]) == [
        A,
        B,
    ]


def test_oldest_membership_members_publish_on_the_oldest_members_sfu() -> None:
    members = [
        state("@a:a", "A1", A, 1, "oldest_membership"),
        state("@b:b", "B1", B, 2, "oldest_membership"),
    ]
    assert publishing_services(members) == [A]


def test_one_sfu_for_everyone_is_one_entry() -> None:
    assert publishing_services([state("@a:a", "A1", A, 1), state("@b:b", "B1", A, 2)]) == [A]
    assert publishing_services([]) == []


def test_same_sfu_ignores_scheme_and_trailing_slash() -> None:
    assert same_sfu("ws://10.0.0.1:7880", "http://10.0.0.1:7880/")
    assert same_sfu("wss://sfu.example/", "https://SFU.example")
    assert not same_sfu("ws://10.0.0.1:7880", "ws://10.0.0.1:7881")
    assert service_name(B) == "b.example"


def test_on_each_sfu_only_the_identities_of_those_who_publish_there() -> None:
    """The foreign-identity rule: a link to another SFU records only these identities."""
    members = [
        state("@a:a", "A1", A, 1),
        sticky("@b:b", "B1", B, 2),
        state("@c:c", "C1", A, 3, "oldest_membership"),  # publishes on the oldest's: A
    ]
    found = publishers_by_service(members)
    # Each member's both identity candidates (js-sdk's first, then the MSC4195 hash).
    assert found[A] == {*members[0].membership.identities, *members[2].membership.identities}
    assert {"@a:a:A1", "@c:c:C1"} < found[A]
    assert found[B] == {members[1].membership.rtc_backend_identity}
    assert "@a:a:A1" not in found[B] and not found[B] & found[A]
