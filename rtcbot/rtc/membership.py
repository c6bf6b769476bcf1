"""Call memberships: parse every shape clients send into one typed model, and build ours.

Three shapes exist on the wire (MSC3401/MSC4143; matrix-js-sdk `src/matrixrtc/CallMembership.ts`):

- ``session``: one ``org.matrix.msc3401.call.member`` state event per device, state key
  ``_@user:server_DEVICE_m.call``. What js-sdk / Element Call send by default, and what we send.
- ``legacy``: the pre-2024 per-user array ``{"memberships": [...]}`` under the user ID as state
  key. js-sdk ignores it, but some clients still send it; we read it, we never send it.
- ``sticky``: ``org.matrix.msc4143.rtc.member`` sticky message events (MSC4354), EC's
  ``matrix_2_0`` mode. They expire with their stickiness, not by a field.

Everything here is pure: hostile content yields an ``invalid`` result with a reason, never an
exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

from .identity import legacy_identity, livekit_identity
from .member_fields import (
    MISSING,
    Invalid,
    Transport,
    as_number,
    event_basics,
    event_id_of,
    opt_number,
    opt_str,
    parse_transports,
    req_str,
)
from .state_keys import ROOM_CALL_ID, owns_state_key

CALL_MEMBER_TYPE: Final = "org.matrix.msc3401.call.member"
RTC_MEMBER_TYPE: Final = "org.matrix.msc4143.rtc.member"  # sticky (MSC4354)
RTC_MEMBER_STABLE_TYPE: Final = "m.rtc.member"  # MSC4143 "current" (matrix-rust-rtc)
RTC_MEMBER_TYPES: Final = (RTC_MEMBER_TYPE, RTC_MEMBER_STABLE_TYPE)
DEFAULT_EXPIRES_MS: Final = 4 * 3600 * 1000  # js-sdk DEFAULT_EXPIRE_DURATION
MAX_STICKY_DURATION_MS: Final = 3600 * 1000  # MSC4354 cap on stickiness


_STICKY_KEY_FIELDS: Final = ("msc4354_sticky_key", "sticky_key")

MembershipKind = Literal["session", "legacy", "sticky"]
# Which sticky shape: Element Call's (`member.{user_id, device_id, id}`, `rtc_transports`,
# `versions`) or MSC4143 "current" (`member.{id, membership}`, nested `transports`).
Dialect = Literal["element_call", "current"]
ParseStatus = Literal["ok", "left", "invalid"]
# Where a membership lives, i.e. what a later event replaces:
# ("state", "", state_key) or ("sticky", sender, sticky_key).
SourceKey = tuple[str, str, str]
# Identity of one member slot: (user_id, device_id, membership_id).
MemberKey = tuple[str, str, str]


@dataclass(frozen=True)
class Membership:
    """One device's presence in one RTC slot, whatever shape it came in."""

    user_id: str
    device_id: str
    application: str
    slot_id: str  # "m.call#ROOM" for the room call
    call_id: str  # "" for the room call (wire form)
    membership_id: str
    intent: str | None  # "audio", "video", "voice", ...
    created_ts: int
    expires_ms: int | None  # relative to created_ts (state shapes); None for sticky
    expires_at: int | None  # absolute ms timestamp
    focus_active: Mapping[str, Any] | None = field(compare=False, repr=False)
    transports: tuple[Transport, ...]
    kind: MembershipKind
    scope: str | None
    state_key: str | None
    sticky_key: str | None
    event_id: str | None
    origin_server_ts: int
    # The slot id as the member wrote it: the LiveKit room alias is derived from it
    # (`m.call#room` and `m.call#ROOM` are one call but two LiveKit rooms).
    wire_slot_id: str = ""
    dialect: Dialect = "element_call"

    def is_expired(self, now_ms: int) -> bool:
        return self.expires_at is not None and now_ms >= self.expires_at

    @property
    def key(self) -> MemberKey:
        """Identity of the member slot; a refresh of the same membership keeps it."""
        return (self.user_id, self.device_id, self.membership_id)

    @property
    def is_room_call(self) -> bool:
        return self.slot_id == f"{self.application}#{ROOM_CALL_ID}"

    @property
    def rtc_backend_identity(self) -> str:
        """The LiveKit participant identity other clients match this membership against."""
        if self.kind == "sticky":
            return livekit_identity(self.user_id, self.device_id, self.membership_id)
        return legacy_identity(self.user_id, self.device_id)

    @property
    def identities(self) -> tuple[str, ...]:
        """Every identity this member's participant may have: js-sdk's (above) first, then
        the MSC4195 hash of (user, device, member id), which a token from a homeserver's
        `rtc/livekit/get_token` may carry even for a state-event membership."""
        hashed = livekit_identity(self.user_id, self.device_id, self.membership_id)
        first = self.rtc_backend_identity
        return (first,) if first == hashed else (first, hashed)


@dataclass(frozen=True)
class ParseResult:
    """What one event says: memberships (``ok``), a leave (``left``) or garbage (``invalid``).

    ``source`` identifies what the event replaces (state key, or sender + sticky key); it is set
    whenever it can be read, even for invalid content, because invalid content still replaces
    whatever was there before.
    """

    status: ParseStatus
    memberships: tuple[Membership, ...] = ()
    reason: str = ""
    source: SourceKey | None = None
    origin_server_ts: int | None = None
    skipped: tuple[str, ...] = ()  # why legacy array entries were dropped

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def left(self) -> bool:
        return self.status == "left"

    @property
    def invalid(self) -> bool:
        return self.status == "invalid"


def slot_id_for(application: str, call_id: str) -> str:
    """Internal slot id for a wire (application, call_id): "" is the room call ``ROOM``."""
    return f"{application}#{call_id or ROOM_CALL_ID}"


# --- parsing ---------------------------------------------------------------------------------


def _focus_active(content: Mapping[str, Any]) -> Mapping[str, Any]:
    value = content.get("focus_active")
    if not isinstance(value, Mapping) or not isinstance(value.get("type"), str):
        raise Invalid("focus_active.type must be a string")
    return MappingProxyType(dict(value))


def _parse_session(
    content: Mapping[str, Any], sender: str, state_key: str, ots: int, event_id: str | None
) -> Membership:
    device_id = req_str(content, "device_id", allow_empty=False)
    call_id = req_str(content, "call_id")
    application = req_str(content, "application", allow_empty=False)
    focus_active = _focus_active(content)
    transports: tuple[Transport, ...] = ()
    if "foci_preferred" in content:
        transports = parse_transports(content["foci_preferred"], "foci_preferred")
    created_ts = opt_number(content, "created_ts")
    expires = opt_number(content, "expires")
    scope = opt_str(content, "scope")
    intent = opt_str(content, "m.call.intent")
    membership_id = opt_str(content, "membershipID")
    caps = content.get("capabilities", MISSING)
    if caps is not MISSING and not (
        isinstance(caps, list) and all(isinstance(c, str) for c in caps)
    ):
        raise Invalid("capabilities must be an array of strings")
    # Anyone allowed to send call.member can write a "_@alice..." key: the key must be the
    # sender's own, for the device the content names.
    if not owns_state_key(state_key, sender, device_id):
        raise Invalid(f"state key {state_key!r} does not belong to {sender} / {device_id}")
    return _state_membership(
        kind="session",
        sender=sender,
        device_id=device_id,
        application=application,
        call_id=call_id,
        membership_id=membership_id,
        intent=intent,
        scope=scope,
        created_ts=created_ts,
        expires=expires,
        expires_ts=None,
        focus_active=focus_active,
        transports=transports,
        state_key=state_key,
        event_id=event_id,
        ots=ots,
    )


def _parse_legacy_entry(
    entry: object, sender: str, state_key: str, ots: int, event_id: str | None
) -> Membership:
    if not isinstance(entry, Mapping):
        raise Invalid("entry is not an object")
    application = req_str(entry, "application", allow_empty=False)
    call_id = req_str(entry, "call_id")
    device_id = req_str(entry, "device_id", allow_empty=False)
    transports: tuple[Transport, ...] = ()
    if "foci_active" in entry:
        transports = parse_transports(entry["foci_active"], "foci_active")
    created_ts = opt_number(entry, "created_ts")
    expires = opt_number(entry, "expires")
    expires_ts = opt_number(entry, "expires_ts")
    scope = opt_str(entry, "scope")
    intent = opt_str(entry, "m.call.intent")
    membership_id = opt_str(entry, "membershipID")
    return _state_membership(
        kind="legacy",
        sender=sender,
        device_id=device_id,
        application=application,
        call_id=call_id,
        membership_id=membership_id,
        intent=intent,
        scope=scope,
        created_ts=created_ts,
        expires=expires,
        expires_ts=expires_ts,
        focus_active=None,
        transports=transports,
        state_key=state_key,
        event_id=event_id,
        ots=ots,
    )


def _state_membership(
    *,
    kind: MembershipKind,
    sender: str,
    device_id: str,
    application: str,
    call_id: str,
    membership_id: str | None,
    intent: str | None,
    scope: str | None,
    created_ts: int | None,
    expires: int | None,
    expires_ts: int | None,
    focus_active: Mapping[str, Any] | None,
    transports: tuple[Transport, ...],
    state_key: str,
    event_id: str | None,
    ots: int,
) -> Membership:
    """A membership from room state (session or legacy shape), with js-sdk's expiry rule."""
    start = ots if created_ts is None else created_ts
    expires_ms = DEFAULT_EXPIRES_MS if expires is None else expires
    return Membership(
        user_id=sender,
        device_id=device_id,
        application=application,
        slot_id=slot_id_for(application, call_id),
        call_id=call_id,
        membership_id=membership_id or legacy_identity(sender, device_id),
        intent=intent,
        created_ts=start,
        expires_ms=expires_ms,
        # The absolute expires_ts (what the legacy shape really used) wins when present.
        expires_at=expires_ts if expires_ts is not None else start + expires_ms,
        focus_active=focus_active,
        transports=transports,
        kind=kind,
        scope=scope,
        state_key=state_key,
        sticky_key=None,
        event_id=event_id,
        origin_server_ts=ots,
    )


def _parse_legacy(
    content: Mapping[str, Any], sender: str, state_key: str, ots: int, event_id: str | None
) -> ParseResult:
    source: SourceKey = ("state", "", state_key)
    entries = content.get("memberships")
    if not isinstance(entries, list):
        raise Invalid("memberships must be an array")
    if not entries:
        return ParseResult("left", source=source, origin_server_ts=ots)
    if state_key != sender:
        raise Invalid(f"legacy memberships under {state_key!r} not sent by that user")
    found: list[Membership] = []
    skipped: list[str] = []
    for index, entry in enumerate(entries):
        try:
            found.append(_parse_legacy_entry(entry, sender, state_key, ots, event_id))
        except Invalid as err:
            skipped.append(f"memberships[{index}]: {err}")
    if not found:
        return ParseResult(
            "invalid",
            reason="no valid legacy membership: " + "; ".join(skipped[:3]),
            source=source,
            origin_server_ts=ots,
            skipped=tuple(skipped),
        )
    return ParseResult(
        "ok", tuple(found), source=source, origin_server_ts=ots, skipped=tuple(skipped)
    )


def parse_state_event(event: Mapping[str, Any]) -> ParseResult:
    """Read a ``org.matrix.msc3401.call.member`` state event of any shape.

    ``event`` is the raw Matrix event dict (type, state_key, sender, content,
    origin_server_ts, event_id). Empty content (or an empty legacy array) is a leave.
    """
    source: SourceKey | None = None
    ots: int | None = None
    try:
        if isinstance(event, Mapping) and isinstance(event.get("state_key"), str):
            source = ("state", "", event["state_key"])
        content, sender, ots = event_basics(event, CALL_MEMBER_TYPE)
        if source is None:
            raise Invalid("state_key is not a string")
        state_key = source[2]
        # A leave may be written by anyone allowed to (e.g. a moderator clearing a ghost).
        if len(content) == 0:
            return ParseResult("left", source=source, origin_server_ts=ots)
        if "memberships" in content and "application" not in content:
            return _parse_legacy(content, sender, state_key, ots, event_id_of(event))
        if len(content) < 2 or "application" not in content:
            raise Invalid("not a call membership (needs more than one key and application)")
        membership = _parse_session(content, sender, state_key, ots, event_id_of(event))
        return ParseResult("ok", (membership,), source=source, origin_server_ts=ots)
    except Invalid as err:
        return ParseResult("invalid", reason=str(err), source=source, origin_server_ts=ots)


def _sticky_key(content: Mapping[str, Any]) -> str:
    present = [content[name] for name in _STICKY_KEY_FIELDS if name in content]
    if not present:
        raise Invalid("sticky_key or msc4354_sticky_key is missing")
    keys = [k for k in present if isinstance(k, str) and k]
    if len(keys) != len(present):
        raise Invalid("sticky key must be a non-empty string")
    if len(set(keys)) != 1:
        raise Invalid("sticky_key and msc4354_sticky_key differ")
    return keys[0]


def _sticky_expiry(event: Mapping[str, Any], ots: int, now_ms: int) -> int:
    """js-sdk: now + remaining TTL if the server told us, else min(now, sent) + duration."""
    unsigned = event.get("unsigned")
    if isinstance(unsigned, Mapping):
        ttl = as_number(unsigned.get("msc4354_sticky_duration_ttl_ms"))
        if ttl is not None:
            return now_ms + min(ttl, MAX_STICKY_DURATION_MS)
    duration = MAX_STICKY_DURATION_MS  # what js-sdk sends; also if the client dropped the field
    for name in ("msc4354_sticky", "sticky"):
        sticky = event.get(name)
        if isinstance(sticky, Mapping):
            value = as_number(sticky.get("duration_ms"))
            if value is not None:
                duration = min(value, MAX_STICKY_DURATION_MS)
                break
    return min(now_ms, ots) + duration


def _sticky_transports(content: Mapping[str, Any]) -> tuple[Transport, ...]:
    # js-sdk mid-2026 sends rtc_transports; newer drafts nest them as transports.published.
    if "rtc_transports" in content:
        return parse_transports(content["rtc_transports"], "rtc_transports")
    nested = content.get("transports", MISSING)
    if nested is MISSING:
        raise Invalid("rtc_transports is missing")
    if not isinstance(nested, Mapping):
        raise Invalid("transports must be an object")
    can_subscribe = nested.get("can_subscribe", [])
    if not isinstance(can_subscribe, list) or not all(isinstance(t, str) for t in can_subscribe):
        raise Invalid("transports.can_subscribe must be an array of strings")
    return parse_transports(nested.get("published"), "transports.published")


def names_no_device(content: object) -> bool:
    """MSC4143 current content: no user, no device (the sender and the decryption name them)."""
    member = content.get("member") if isinstance(content, Mapping) else None
    return isinstance(member, Mapping) and "device_id" not in member and "user_id" not in member


def _sticky_member(
    content: Mapping[str, Any], sender: str, device_hint: str | None
) -> tuple[str, str, Dialect]:
    """(device id, member id, dialect) of a sticky membership's `member`."""
    member = content.get("member")
    if not isinstance(member, Mapping):
        raise Invalid("member must be an object")
    member_id = req_str(member, "id", allow_empty=False)
    if "user_id" in member or "versions" in content:  # Element Call's dialect
        if member.get("user_id") != sender:
            raise Invalid("member.user_id must be the sender")
        device_id = req_str(member, "device_id", allow_empty=False)
        versions = content.get("versions")
        if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
            raise Invalid("versions must be an array of strings")
        return device_id, member_id, "element_call"
    # MSC4143 current: no user (the sender), no device (the Megolm decryption info names
    # it; unknown in an unencrypted room until the member's key arrives).
    device = member.get("device_id", device_hint)
    if device is not None and not isinstance(device, str):
        raise Invalid("member.device_id must be a string")
    return device or "", member_id, "current"


def _is_leave(content: Mapping[str, Any]) -> bool:
    """A bare sticky key, or (js-sdk 45 #5616, MSC4143 current) full content whose
    `member.membership` is "leave"."""
    if not (content.keys() - set(_STICKY_KEY_FIELDS)):
        return True
    member = content.get("member")
    return isinstance(member, Mapping) and member.get("membership") == "leave"


def parse_sticky_event(
    event: Mapping[str, Any], now_ms: int, device_hint: str | None = None
) -> ParseResult:
    """Read a sticky ``org.matrix.msc4143.rtc.member`` / ``m.rtc.member`` event (MSC4354),
    in Element Call's dialect or MSC4143 "current"; ``device_hint``: the sending device as
    the decryption named it, for current members (which name none).

    A leave is content holding only the sticky key, or `member.membership: "leave"`.
    ``now_ms`` fixes the stickiness expiry.
    """
    source: SourceKey | None = None
    ots: int | None = None
    try:
        kind = event.get("type") if isinstance(event, Mapping) else None
        expected = kind if kind in RTC_MEMBER_TYPES else RTC_MEMBER_TYPE
        content, sender, ots = event_basics(event, str(expected))
        key = _sticky_key(content)
        source = ("sticky", sender, key)
        if _is_leave(content):
            return ParseResult("left", source=source, origin_server_ts=ots)

        application = content.get("application")
        if not isinstance(application, Mapping):
            raise Invalid("application must be an object")
        app_type = req_str(application, "type", allow_empty=False)
        if "#" in app_type:
            raise Invalid('application.type must not contain "#"')
        intent = opt_str(application, "m.call.intent")
        slot_id = req_str(content, "slot_id")
        if not slot_id.startswith(f"{app_type}#") or slot_id.count("#") != 1:
            raise Invalid(f"slot_id must be {app_type}#<id> with exactly one #")
        device_id, member_id, dialect = _sticky_member(content, sender, device_hint)

        transports = _sticky_transports(content)
        relation = content.get("m.relates_to", MISSING)
        if relation is not MISSING and not (
            isinstance(relation, Mapping)
            and isinstance(relation.get("event_id"), str)
            and relation.get("rel_type") == "m.reference"
        ):
            raise Invalid("m.relates_to must be an m.reference to an event")

        call_id = slot_id.split("#", 1)[1]
        # `m.call#room` (MSC4143 current) and `m.call#ROOM` (Element Call): the room's call.
        # Exactly these two spellings: each other one would be another LiveKit room that a
        # recording links to.
        room_call = call_id in (ROOM_CALL_ID, ROOM_CALL_ID.lower())
        membership = Membership(
            user_id=sender,
            device_id=device_id,
            application=app_type,
            slot_id=slot_id_for(app_type, "") if room_call else slot_id,
            call_id="" if room_call else call_id,
            membership_id=member_id,
            intent=intent,
            created_ts=ots,  # js-sdk orders sticky members by origin_server_ts
            expires_ms=None,
            expires_at=_sticky_expiry(event, ots, now_ms),
            focus_active=None,
            transports=transports,
            kind="sticky",
            scope=None,
            state_key=None,
            sticky_key=key,
            event_id=event_id_of(event),
            origin_server_ts=ots,
            wire_slot_id=slot_id,
            dialect=dialect,
        )
        return ParseResult("ok", (membership,), source=source, origin_server_ts=ots)
    except Invalid as err:
        return ParseResult("invalid", reason=str(err), source=source, origin_server_ts=ots)
