"""Call memberships: parse every shape clients send into one typed model, and build ours.

Three shapes exist on the wire (see docs in shared/reference/matrixrtc-protocol.md §2):

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

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, TypeGuard

from .identity import legacy_identity, livekit_identity

CALL_MEMBER_TYPE: Final = "org.matrix.msc3401.call.member"
RTC_MEMBER_TYPE: Final = "org.matrix.msc4143.rtc.member"  # sticky (MSC4354)
DEFAULT_EXPIRES_MS: Final = 4 * 3600 * 1000  # js-sdk DEFAULT_EXPIRE_DURATION
MAX_STICKY_DURATION_MS: Final = 3600 * 1000  # MSC4354 cap on stickiness
ROOM_CALL_ID: Final = "ROOM"  # wire call_id "" <=> slot "m.call#ROOM"
CALL_APPLICATION: Final = "m.call"
# JSON numbers from JS clients are doubles; anything past this cannot be a real timestamp.
MAX_SAFE_INT: Final = 2**53 - 1

# Applications whose state-key suffix we recognise even when device IDs contain "_".
KNOWN_APPLICATIONS: Final = (CALL_APPLICATION,)

_STICKY_KEY_FIELDS: Final = ("msc4354_sticky_key", "sticky_key")
# A user ID's localpart cannot contain ":", its server name cannot contain "_".
_USER_ID = re.compile(r"@[^:\s]+:[^\s_]+")

MembershipKind = Literal["session", "legacy", "sticky"]
ParseStatus = Literal["ok", "left", "invalid"]
# Where a membership lives, i.e. what a later event replaces:
# ("state", "", state_key) or ("sticky", sender, sticky_key).
SourceKey = tuple[str, str, str]
# Identity of one member slot: (user_id, device_id, membership_id).
MemberKey = tuple[str, str, str]

_MISSING: Final = object()


@dataclass(frozen=True)
class Transport:
    """One RTC transport (SFU) a member advertises; ``raw`` keeps unknown fields."""

    type: str
    livekit_service_url: str | None
    livekit_alias: str | None
    raw: Mapping[str, Any] = field(compare=False, repr=False)


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


class _Invalid(Exception):
    """Internal: a validation failure, turned into ``ParseResult(status="invalid")``."""


# --- small validators ------------------------------------------------------------------------


def _number(value: object) -> int | None:
    """A JSON number usable as a timestamp or duration, else None. ``True`` is no number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= MAX_SAFE_INT else None
    if isinstance(value, float) and math.isfinite(value) and 0 <= value <= MAX_SAFE_INT:
        return int(value)
    return None


def _opt_number(content: Mapping[str, Any], name: str) -> int | None:
    value = content.get(name, _MISSING)
    if value is _MISSING:
        return None
    number = _number(value)
    if number is None:
        raise _Invalid(f"{name} must be a non-negative number")
    return number


def _req_str(content: Mapping[str, Any], name: str, *, allow_empty: bool = True) -> str:
    value = content.get(name, _MISSING)
    if not isinstance(value, str):
        raise _Invalid(f"{name} must be a string")
    if not allow_empty and not value:
        raise _Invalid(f"{name} must not be empty")
    return value


def _opt_str(content: Mapping[str, Any], name: str) -> str | None:
    value = content.get(name, _MISSING)
    if value is _MISSING:
        return None
    if not isinstance(value, str):
        raise _Invalid(f"{name} must be a string")
    return value


def _is_user_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _USER_ID.fullmatch(value) is not None


def _transport(value: object, where: str) -> Transport:
    if not isinstance(value, Mapping) or not isinstance(value.get("type"), str):
        raise _Invalid(f"{where} entries must be objects with a string type")
    url = value.get("livekit_service_url")
    alias = value.get("livekit_alias")
    return Transport(
        type=value["type"],
        livekit_service_url=url if isinstance(url, str) else None,
        livekit_alias=alias if isinstance(alias, str) else None,
        raw=MappingProxyType(dict(value)),
    )


def _transports(value: object, where: str) -> tuple[Transport, ...]:
    # Strings and mappings are iterable too; only a JSON array is a list of transports.
    if not isinstance(value, list | tuple):
        raise _Invalid(f"{where} must be an array")
    return tuple(_transport(item, where) for item in value)


def _event_basics(event: object, expected_type: str) -> tuple[Mapping[str, Any], str, int]:
    """(content, sender, origin_server_ts) of a well-formed event envelope."""
    if not isinstance(event, Mapping):
        raise _Invalid("event is not an object")
    if event.get("type") != expected_type:
        raise _Invalid(f"event type is not {expected_type}")
    content = event.get("content")
    if not isinstance(content, Mapping):
        raise _Invalid("content is not an object")
    sender = event.get("sender")
    if not _is_user_id(sender):
        raise _Invalid("sender is not a user ID")
    ots = _number(event.get("origin_server_ts"))
    if ots is None:
        raise _Invalid("origin_server_ts is missing or not a timestamp")
    return content, sender, ots


def _event_id(event: Mapping[str, Any]) -> str | None:
    value = event.get("event_id")
    return value if isinstance(value, str) else None


def slot_id_for(application: str, call_id: str) -> str:
    """Internal slot id for a wire (application, call_id): "" is the room call ``ROOM``."""
    return f"{application}#{call_id or ROOM_CALL_ID}"


# --- state keys ------------------------------------------------------------------------------


def make_state_key(
    user_id: str,
    device_id: str,
    application: str = CALL_APPLICATION,
    slot: str = "",
    leading_underscore: bool = True,
) -> str:
    """The state key js-sdk uses for a device's session membership.

    ``slot`` is the call_id ("" or "ROOM" for the room call); js-sdk appends it to the
    application with no separator. Drop the leading "_" only in MSC3757 room versions.
    """
    slot_part = "" if slot in ("", ROOM_CALL_ID) else slot
    key = f"{user_id}_{device_id}_{application}{slot_part}"
    return f"_{key}" if leading_underscore else key


def parse_state_key(key: str) -> tuple[str, str, str] | None:
    """Split a session state key into (user_id, device_id, application + slot part).

    Returns None for anything else (including a bare user ID, the legacy shape). Server names
    cannot contain "_", so the user ID ends at the first "_" after its ":". Device IDs normally
    have no "_": a known application suffix (``_m.call``) is looked for first, otherwise the
    application is the last "_" segment. Old js-sdk keys without an application part give "".
    """
    if not isinstance(key, str):
        return None
    rest = key[1:] if key.startswith("_") else key
    if not rest.startswith("@"):
        return None
    colon = rest.find(":")
    if colon < 2:
        return None
    end = rest.find("_", colon)
    if end == -1 or end == colon + 1:
        return None
    user_id, tail = rest[:end], rest[end + 1 :]
    if not _is_user_id(user_id) or not tail:
        return None
    for application in KNOWN_APPLICATIONS:
        at = tail.find(f"_{application}")
        if at > 0:
            return user_id, tail[:at], tail[at + 1 :]
    at = tail.rfind("_")
    if at == -1:
        return user_id, tail, ""
    if at == 0:
        return None
    return user_id, tail[:at], tail[at + 1 :]


def _owns_state_key(state_key: str, sender: str, device_id: str) -> bool:
    """Whether a session state key belongs to ``sender``'s ``device_id``.

    Checked by prefix rather than via ``parse_state_key`` so device IDs containing "_" work.
    """
    for prefix in ("_", ""):
        base = f"{prefix}{sender}_"
        if state_key.startswith(base):
            tail = state_key[len(base) :]
            if tail == device_id or tail.startswith(f"{device_id}_"):
                return True
    # Very old clients put session content under the bare user ID.
    return state_key == sender


# --- parsing ---------------------------------------------------------------------------------


def _focus_active(content: Mapping[str, Any]) -> Mapping[str, Any]:
    value = content.get("focus_active")
    if not isinstance(value, Mapping) or not isinstance(value.get("type"), str):
        raise _Invalid("focus_active.type must be a string")
    return MappingProxyType(dict(value))


def _parse_session(
    content: Mapping[str, Any], sender: str, state_key: str, ots: int, event_id: str | None
) -> Membership:
    device_id = _req_str(content, "device_id", allow_empty=False)
    call_id = _req_str(content, "call_id")
    application = _req_str(content, "application", allow_empty=False)
    focus_active = _focus_active(content)
    transports: tuple[Transport, ...] = ()
    if "foci_preferred" in content:
        transports = _transports(content["foci_preferred"], "foci_preferred")
    created_ts = _opt_number(content, "created_ts")
    expires = _opt_number(content, "expires")
    scope = _opt_str(content, "scope")
    intent = _opt_str(content, "m.call.intent")
    membership_id = _opt_str(content, "membershipID")
    caps = content.get("capabilities", _MISSING)
    if caps is not _MISSING and not (
        isinstance(caps, list) and all(isinstance(c, str) for c in caps)
    ):
        raise _Invalid("capabilities must be an array of strings")
    # Anyone allowed to send call.member can write a "_@alice..." key: the key must be the
    # sender's own, for the device the content names.
    if not _owns_state_key(state_key, sender, device_id):
        raise _Invalid(f"state key {state_key!r} does not belong to {sender} / {device_id}")
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
        raise _Invalid("entry is not an object")
    application = _req_str(entry, "application", allow_empty=False)
    call_id = _req_str(entry, "call_id")
    device_id = _req_str(entry, "device_id", allow_empty=False)
    transports: tuple[Transport, ...] = ()
    if "foci_active" in entry:
        transports = _transports(entry["foci_active"], "foci_active")
    created_ts = _opt_number(entry, "created_ts")
    expires = _opt_number(entry, "expires")
    expires_ts = _opt_number(entry, "expires_ts")
    scope = _opt_str(entry, "scope")
    intent = _opt_str(entry, "m.call.intent")
    membership_id = _opt_str(entry, "membershipID")
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
        raise _Invalid("memberships must be an array")
    if not entries:
        return ParseResult("left", source=source, origin_server_ts=ots)
    if state_key != sender:
        raise _Invalid(f"legacy memberships under {state_key!r} not sent by that user")
    found: list[Membership] = []
    skipped: list[str] = []
    for index, entry in enumerate(entries):
        try:
            found.append(_parse_legacy_entry(entry, sender, state_key, ots, event_id))
        except _Invalid as err:
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
        content, sender, ots = _event_basics(event, CALL_MEMBER_TYPE)
        if source is None:
            raise _Invalid("state_key is not a string")
        state_key = source[2]
        # A leave may be written by anyone allowed to (e.g. a moderator clearing a ghost).
        if len(content) == 0:
            return ParseResult("left", source=source, origin_server_ts=ots)
        if "memberships" in content and "application" not in content:
            return _parse_legacy(content, sender, state_key, ots, _event_id(event))
        if len(content) < 2 or "application" not in content:
            raise _Invalid("not a call membership (needs more than one key and application)")
        membership = _parse_session(content, sender, state_key, ots, _event_id(event))
        return ParseResult("ok", (membership,), source=source, origin_server_ts=ots)
    except _Invalid as err:
        return ParseResult("invalid", reason=str(err), source=source, origin_server_ts=ots)


def _sticky_key(content: Mapping[str, Any]) -> str:
    present = [content[name] for name in _STICKY_KEY_FIELDS if name in content]
    if not present:
        raise _Invalid("sticky_key or msc4354_sticky_key is missing")
    keys = [k for k in present if isinstance(k, str) and k]
    if len(keys) != len(present):
        raise _Invalid("sticky key must be a non-empty string")
    if len(set(keys)) != 1:
        raise _Invalid("sticky_key and msc4354_sticky_key differ")
    return keys[0]


def _sticky_expiry(event: Mapping[str, Any], ots: int, now_ms: int) -> int:
    """js-sdk: now + remaining TTL if the server told us, else min(now, sent) + duration."""
    unsigned = event.get("unsigned")
    if isinstance(unsigned, Mapping):
        ttl = _number(unsigned.get("msc4354_sticky_duration_ttl_ms"))
        if ttl is not None:
            return now_ms + min(ttl, MAX_STICKY_DURATION_MS)
    duration = MAX_STICKY_DURATION_MS  # what js-sdk sends; also if the client dropped the field
    for name in ("msc4354_sticky", "sticky"):
        sticky = event.get(name)
        if isinstance(sticky, Mapping):
            value = _number(sticky.get("duration_ms"))
            if value is not None:
                duration = min(value, MAX_STICKY_DURATION_MS)
                break
    return min(now_ms, ots) + duration


def _sticky_transports(content: Mapping[str, Any]) -> tuple[Transport, ...]:
    # js-sdk mid-2026 sends rtc_transports; newer drafts nest them as transports.published.
    if "rtc_transports" in content:
        return _transports(content["rtc_transports"], "rtc_transports")
    nested = content.get("transports", _MISSING)
    if nested is _MISSING:
        raise _Invalid("rtc_transports is missing")
    if not isinstance(nested, Mapping):
        raise _Invalid("transports must be an object")
    can_subscribe = nested.get("can_subscribe", [])
    if not isinstance(can_subscribe, list) or not all(isinstance(t, str) for t in can_subscribe):
        raise _Invalid("transports.can_subscribe must be an array of strings")
    return _transports(nested.get("published"), "transports.published")


def parse_sticky_event(event: Mapping[str, Any], now_ms: int) -> ParseResult:
    """Read a sticky ``org.matrix.msc4143.rtc.member`` event (MSC4354).

    Content holding only the sticky key is a leave. ``now_ms`` fixes the stickiness expiry.
    """
    source: SourceKey | None = None
    ots: int | None = None
    try:
        content, sender, ots = _event_basics(event, RTC_MEMBER_TYPE)
        key = _sticky_key(content)
        source = ("sticky", sender, key)
        if not (content.keys() - set(_STICKY_KEY_FIELDS)):
            return ParseResult("left", source=source, origin_server_ts=ots)

        application = content.get("application")
        if not isinstance(application, Mapping):
            raise _Invalid("application must be an object")
        app_type = _req_str(application, "type", allow_empty=False)
        if "#" in app_type:
            raise _Invalid('application.type must not contain "#"')
        intent = _opt_str(application, "m.call.intent")
        slot_id = _req_str(content, "slot_id")
        if not slot_id.startswith(f"{app_type}#") or slot_id.count("#") != 1:
            raise _Invalid(f"slot_id must be {app_type}#<id> with exactly one #")

        member = content.get("member")
        if not isinstance(member, Mapping):
            raise _Invalid("member must be an object")
        if member.get("user_id") != sender:
            raise _Invalid("member.user_id must be the sender")
        device_id = _req_str(member, "device_id", allow_empty=False)
        member_id = _req_str(member, "id", allow_empty=False)

        transports = _sticky_transports(content)
        versions = content.get("versions")
        if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
            raise _Invalid("versions must be an array of strings")
        relation = content.get("m.relates_to", _MISSING)
        if relation is not _MISSING and not (
            isinstance(relation, Mapping)
            and isinstance(relation.get("event_id"), str)
            and relation.get("rel_type") == "m.reference"
        ):
            raise _Invalid("m.relates_to must be an m.reference to an event")

        call_id = slot_id.split("#", 1)[1]
        membership = Membership(
            user_id=sender,
            device_id=device_id,
            application=app_type,
            slot_id=slot_id,
            call_id="" if call_id == ROOM_CALL_ID else call_id,
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
            event_id=_event_id(event),
            origin_server_ts=ots,
        )
        return ParseResult("ok", (membership,), source=source, origin_server_ts=ots)
    except _Invalid as err:
        return ParseResult("invalid", reason=str(err), source=source, origin_server_ts=ots)


# --- what the bot sends ----------------------------------------------------------------------


def livekit_transport(service_url: str, alias: str | None = None) -> dict[str, Any]:
    """A ``foci_preferred`` entry; EC puts the Matrix room ID in ``livekit_alias``."""
    transport: dict[str, Any] = {"type": "livekit", "livekit_service_url": service_url}
    if alias is not None:
        transport["livekit_alias"] = alias
    return transport


def session_content(
    user_id: str,
    device_id: str,
    transports: Sequence[Mapping[str, Any]] = (),
    *,
    intent: str | None = "audio",
    expires_ms: int = DEFAULT_EXPIRES_MS,
    created_ts: int | None = None,
    application: str = CALL_APPLICATION,
    call_id: str = "",
    focus_selection: str = "multi_sfu",
) -> dict[str, Any]:
    """The session membership content exactly as js-sdk writes it (EC compatibility mode).

    ``created_ts`` is omitted on the first join and carries the original join time on every
    refresh; ``intent`` None leaves ``m.call.intent`` out.
    """
    content: dict[str, Any] = {
        "application": application,
        "call_id": call_id,
        "scope": "m.room",
        "device_id": device_id,
        "membershipID": legacy_identity(user_id, device_id),
        "expires": expires_ms,
    }
    if intent is not None:
        content["m.call.intent"] = intent
    content["focus_active"] = {"type": "livekit", "focus_selection": focus_selection}
    content["foci_preferred"] = [dict(t) for t in transports]
    if created_ts is not None:
        content["created_ts"] = created_ts
    return content
