"""Which SFUs a call's media is on, as Element Call decides it (pure).

`multi_sfu` (Element Call's compatibility and matrix_2_0 modes): every member publishes on
the first LiveKit transport of its own membership (`foci_preferred[0]`, or the sticky
event's `transports.published[0]`), usually its own homeserver's. `oldest_membership`
(legacy mode): everyone publishes on the oldest member's. Subscribers connect to each SFU
where somebody publishes; a recorder must do the same to hear everyone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol
from urllib.parse import urlsplit

from .member_fields import Transport
from .membership import Membership


class _Member(Protocol):
    @property
    def since_ms(self) -> int: ...
    @property
    def membership(self) -> Membership: ...


def same_sfu(a: str, b: str) -> bool:
    """Two LiveKit URLs of one server (ws/wss/http/https and a trailing slash aside)."""

    def norm(url: str) -> tuple[str, str]:
        parts = urlsplit(url)
        return parts.netloc.lower(), parts.path.rstrip("/")

    return norm(a) == norm(b)


def service_key(url: str) -> str:
    """URLs of one service compare equal whatever their trailing slash."""
    return url.rstrip("/")


def first_livekit(transports: Iterable[Transport]) -> Transport | None:
    """The first LiveKit transport with a `url` or a service URL (what EC publishes on)."""
    return next((t for t in transports if t.key), None)


ROOM_SLOT = "m.call#ROOM"


def link_key(transport_key: str, wire_slot: str = "") -> str:
    """Where a member's media is: its SFU, and the slot whose LiveKit room it is in when
    that is not the room call's `m.call#ROOM` (MSC4143 current members use `m.call#room`,
    another LiveKit room on the same SFU)."""
    return transport_key if wire_slot in ("", ROOM_SLOT) else f"{transport_key} {wire_slot}"


def split_link_key(key: str) -> tuple[str, str]:
    """(the SFU's key, the slot id) of a `link_key` (URLs hold no space)."""
    sfu, _, slot = key.partition(" ")
    return sfu, slot or ROOM_SLOT


def _first_livekit(transports: Iterable[Transport]) -> str | None:
    found = first_livekit(transports)
    return found.key if found else None


def _member_key(m: Membership) -> str | None:
    found = _first_livekit(m.transports)
    return link_key(found, m.wire_slot_id) if found else None


def transports_by_key(members: Iterable[_Member]) -> dict[str, Transport]:
    """Each SFU's key (rtc/member_fields.py `Transport.key`) → the transport that named it
    first, oldest member first: how to reach an SFU that `publishers_by_service` lists."""
    found: dict[str, Transport] = {}
    for m in sorted(members, key=lambda m: (m.since_ms, m.membership.user_id)):
        t = first_livekit(m.membership.transports)
        if t is not None and t.key is not None:
            found.setdefault(link_key(t.key, m.membership.wire_slot_id), t)
    return found


def _oldest_only(m: Membership) -> bool:
    focus = m.focus_active or {}
    return m.kind != "sticky" and focus.get("focus_selection") == "oldest_membership"


def publishers_by_service(members: Iterable[_Member]) -> dict[str, set[str]]:
    """SFU key (its `url`, else its service URL) → the LiveKit identities of the members who
    publish there, oldest member's first. On another SFU only these identities are the members' own: any
    other participant there is whoever that SFU's operator says it is."""
    ordered = sorted(members, key=lambda m: (m.since_ms, m.membership.user_id))
    oldest = next((u for m in ordered if (u := _member_key(m.membership))), None)
    found: dict[str, set[str]] = {}
    for m in ordered:
        own = _member_key(m.membership)
        where = oldest if _oldest_only(m.membership) else own
        if where:
            found.setdefault(where, set()).update(m.membership.identities)
    return found


def publishing_services(members: Iterable[_Member]) -> list[str]:
    """The authorization-service URLs where the members publish, oldest member's first."""
    return list(publishers_by_service(members))
