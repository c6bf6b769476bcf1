"""The calls going on in one room, derived from memberships: a pure state machine.

``RoomCalls`` stores what the room says (state memberships by state key, sticky memberships by
sender + sticky key, who is joined) and, after every input, recomputes who counts as being in
which call, the way js-sdk does (§2.6): not expired, sender joined, sticky wins over a state
membership with the same (user, device, membership id). The difference to the previous view is
returned as derived events: ``CallStarted``, ``MemberJoined``, ``MemberLeft``, ``CallEnded``.

Each (application, slot) is its own call: an ``m.call`` room call is never mixed with another
application's session or another slot. Time is always passed in (``now_ms``); nothing here
sleeps, logs or talks to the network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from .membership import (
    CALL_MEMBER_TYPE,
    MAX_STICKY_DURATION_MS,
    RTC_MEMBER_TYPES,
    MemberKey,
    Membership,
    MembershipKind,
    ParseResult,
    Transport,
    parse_state_event,
    parse_sticky_event,
)

CallKey = tuple[str, str]  # (application, slot_id)
LeftReason = Literal["left", "expired", "room_left"]

# How long a sticky leave is remembered, so an older join arriving late cannot resurrect it.
_STICKY_TOMBSTONE_MS: Final = MAX_STICKY_DURATION_MS


@dataclass(frozen=True)
class CallStarted:
    room_id: str
    slot_id: str
    application: str
    started_by: str  # user ID of the oldest membership
    intent: str | None
    at_ms: int


@dataclass(frozen=True)
class MemberJoined:
    """A device joined a call. ``other_devices``: the user's devices already in it (0 = new)."""

    room_id: str
    slot_id: str
    application: str
    user_id: str
    device_id: str
    at_ms: int
    other_devices: int = 0


@dataclass(frozen=True)
class MemberLeft:
    """A device left a call. ``other_devices``: the user's devices still in it (0 = gone).

    ``reason``: "left" (membership removed), "expired" (a ghost whose membership ran out),
    "room_left" (the user is no longer joined to the room).
    """

    room_id: str
    slot_id: str
    application: str
    user_id: str
    device_id: str
    at_ms: int
    reason: LeftReason
    other_devices: int = 0


@dataclass(frozen=True)
class CallEnded:
    """The last member is gone. People are counted as distinct user IDs, not devices."""

    room_id: str
    slot_id: str
    application: str
    at_ms: int
    started_at_ms: int
    duration_ms: int
    peak_participants: int  # most distinct users in the call at once
    participants_total: int  # distinct users who were ever in it


CallEvent = CallStarted | MemberJoined | MemberLeft | CallEnded


@dataclass(frozen=True)
class CallMember:
    """One device in an active call."""

    user_id: str
    device_id: str
    membership_id: str
    since_ms: int
    intent: str | None
    transports: tuple[Transport, ...]
    expires_at: int | None
    kind: MembershipKind
    membership: Membership


@dataclass
class ActiveCall:
    room_id: str
    application: str
    slot_id: str
    started_at_ms: int
    started_by: str
    intent: str | None
    members: dict[MemberKey, CallMember] = field(default_factory=dict)
    peak_participants: int = 0
    participants: set[str] = field(default_factory=set)  # distinct users ever

    def user_ids(self) -> list[str]:
        """Distinct users in the call now, longest-present first."""
        ordered = sorted(self.members.values(), key=lambda m: (m.since_ms, m.user_id))
        return list(dict.fromkeys(m.user_id for m in ordered))

    def devices_of(self, user_id: str) -> int:
        return sum(1 for m in self.members.values() if m.user_id == user_id)

    def member_by_identity(self, identity: str) -> CallMember | None:
        """The member whose LiveKit participant has this identity: `user:device` for a
        state-event membership, the MSC4195 hash for a sticky (matrix_2_0) one."""
        return next(
            (m for m in self.members.values() if identity in m.membership.identities),
            None,
        )


def _member(membership: Membership, since_ms: int) -> CallMember:
    return CallMember(
        user_id=membership.user_id,
        device_id=membership.device_id,
        membership_id=membership.membership_id,
        since_ms=since_ms,
        intent=membership.intent,
        transports=membership.transports,
        expires_at=membership.expires_at,
        kind=membership.kind,
        membership=membership,
    )


class RoomCalls:
    """The call model of one room. Feed it events; it returns what changed.

    ``joined`` None means "room membership not known yet": every sender counts until
    ``set_joined_members`` or ``rebuild`` provides the list.
    ``on_invalid(result, event)`` is called for content that failed to parse (for a debug log).
    """

    def __init__(
        self,
        room_id: str,
        *,
        joined: Iterable[str] | None = None,
        on_invalid: Callable[[ParseResult, Mapping[str, Any]], None] | None = None,
    ) -> None:
        self.room_id = room_id
        self.calls: dict[CallKey, ActiveCall] = {}
        self._joined: set[str] | None = None if joined is None else set(joined)
        self._on_invalid = on_invalid
        self._state: dict[str, tuple[Membership, ...]] = {}
        self._sticky: dict[tuple[str, str], Membership] = {}
        self._sticky_left: dict[tuple[str, str], int] = {}  # key -> origin_server_ts of leave

    # --- inputs ------------------------------------------------------------------------------

    def apply_state(self, event: Mapping[str, Any], now_ms: int) -> list[CallEvent]:
        """A ``call.member`` state event (any shape) became the current state for its key."""
        if not self._store_state(event):
            return []
        return self._sync(now_ms)

    def apply_sticky(
        self, event: Mapping[str, Any], now_ms: int, device_hint: str | None = None
    ) -> list[CallEvent]:
        """A sticky ``rtc.member`` event arrived (timeline or sync's sticky section);
        ``device_hint``: its sending device from the decryption (MSC4143 current members)."""
        if not self._store_sticky(event, now_ms, device_hint):
            return []
        return self._sync(now_ms)

    def set_joined_members(self, user_ids: Iterable[str], now_ms: int) -> list[CallEvent]:
        """Room membership changed: members who are not joined stop counting."""
        self._joined = set(user_ids)
        return self._sync(now_ms)

    def tick(self, now_ms: int) -> list[CallEvent]:
        """Expiry sweep; call it at ``next_expiry_ms()`` (or periodically)."""
        events = self._sync(now_ms)
        # Stickiness that ran out is gone from the room; forget it after reporting it.
        for key, membership in list(self._sticky.items()):
            if membership.is_expired(now_ms):
                del self._sticky[key]
        for key, left_ts in list(self._sticky_left.items()):
            if left_ts + _STICKY_TOMBSTONE_MS < now_ms:
                del self._sticky_left[key]
        return events

    def rebuild(
        self,
        state_events: Iterable[Mapping[str, Any]],
        joined: Iterable[str],
        now_ms: int,
        sticky_events: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        """Start over from the room's current state, silently: no events, no re-announcing.

        A call's start is its oldest member's ``created_ts``; the peak starts at the people in
        it now.
        """
        self.calls.clear()
        self._state.clear()
        self._sticky.clear()
        self._sticky_left.clear()
        self._joined = set(joined)
        for event in state_events:
            self._store_state(event)
        for event in sticky_events:
            self._store_sticky(event, now_ms)
        for call_key, members in self._collect(now_ms).items():
            oldest = min(members.values(), key=_age_order)
            call = ActiveCall(
                room_id=self.room_id,
                application=call_key[0],
                slot_id=call_key[1],
                started_at_ms=min(oldest.created_ts, now_ms),
                started_by=oldest.user_id,
                intent=_first_intent(oldest, members.values()),
                members={k: _member(m, min(m.created_ts, now_ms)) for k, m in members.items()},
            )
            users = call.user_ids()
            call.participants = set(users)
            call.peak_participants = len(users)
            self.calls[call_key] = call

    # --- queries -----------------------------------------------------------------------------

    def next_expiry_ms(self) -> int | None:
        """When the soonest counted membership expires (schedule ``tick`` then), or None."""
        times = [
            m.expires_at
            for call in self.calls.values()
            for m in call.members.values()
            if m.expires_at is not None
        ]
        return min(times, default=None)

    def ghosts(self, now_ms: int) -> list[Membership]:
        """State memberships that expired but are still in room state (no leave was sent)."""
        found = [m for ms in self._state.values() for m in ms if m.is_expired(now_ms)]
        return sorted(found, key=lambda m: (m.expires_at or 0, m.user_id, m.device_id))

    def memberships(self) -> list[Membership]:
        """Every stored membership (state and sticky), counted or not; e.g. to find our own."""
        state = [m for ms in self._state.values() for m in ms]
        return state + list(self._sticky.values())

    def call(self, application: str = "m.call", slot_id: str = "m.call#ROOM") -> ActiveCall | None:
        return self.calls.get((application, slot_id))

    @property
    def joined(self) -> frozenset[str] | None:
        return None if self._joined is None else frozenset(self._joined)

    # --- internals ---------------------------------------------------------------------------

    def _report_invalid(self, result: ParseResult, event: Mapping[str, Any]) -> None:
        if self._on_invalid is not None:
            self._on_invalid(result, event)

    def _store_state(self, event: Mapping[str, Any]) -> bool:
        """Store one state event; False if it is not a call.member state event at all."""
        if not isinstance(event, Mapping) or event.get("type") != CALL_MEMBER_TYPE:
            return False
        result = parse_state_event(event)
        if result.source is None:  # no state key: nothing in the room changed
            self._report_invalid(result, event)
            return False
        state_key = result.source[2]
        if result.ok:
            self._state[state_key] = result.memberships
        else:
            # Garbage replaces the previous state just like a leave does.
            self._state.pop(state_key, None)
            if result.invalid:
                self._report_invalid(result, event)
        return True

    def _store_sticky(
        self, event: Mapping[str, Any], now_ms: int, device_hint: str | None = None
    ) -> bool:
        if not isinstance(event, Mapping) or event.get("type") not in RTC_MEMBER_TYPES:
            return False
        result = parse_sticky_event(event, now_ms, device_hint)
        if result.source is None or result.origin_server_ts is None:
            self._report_invalid(result, event)
            return False
        key = (result.source[1], result.source[2])
        sent = result.origin_server_ts
        # Among sticky events with one key the newest wins, whatever order they arrive in.
        current = self._sticky.get(key)
        newest = max(current.origin_server_ts if current else -1, self._sticky_left.get(key, -1))
        if sent < newest:
            return False
        if result.ok:
            self._sticky[key] = result.memberships[0]
            self._sticky_left.pop(key, None)
        else:
            self._sticky.pop(key, None)
            self._sticky_left[key] = sent
            if result.invalid:
                self._report_invalid(result, event)
        return True

    def _counts(self, membership: Membership, now_ms: int) -> bool:
        joined = self._joined is None or membership.user_id in self._joined
        return joined and not membership.is_expired(now_ms)

    def _collect(self, now_ms: int) -> dict[CallKey, dict[MemberKey, Membership]]:
        """Who counts as being in which call right now."""
        calls: dict[CallKey, dict[MemberKey, Membership]] = {}

        def put(m: Membership) -> None:
            members = calls.setdefault((m.application, m.slot_id), {})
            existing = members.get(m.key)
            # Duplicates (e.g. a legacy array repeating an entry): keep the longer-lived one.
            if existing is None or (m.expires_at or 0) > (existing.expires_at or 0):
                members[m.key] = m

        live_sticky = [m for m in self._sticky.values() if self._counts(m, now_ms)]
        shadowed = {m.key for m in live_sticky}
        for m in live_sticky:
            put(m)
        for memberships in self._state.values():
            for m in memberships:
                if m.key not in shadowed and self._counts(m, now_ms):
                    put(m)
        return calls

    def _why_gone(self, call_key: CallKey, key: MemberKey, now_ms: int) -> LeftReason:
        for m in self.memberships():
            if m.key == key and (m.application, m.slot_id) == call_key:
                if self._joined is not None and m.user_id not in self._joined:
                    return "room_left"
                if m.is_expired(now_ms):
                    return "expired"
        return "left"

    def _sync(self, now_ms: int) -> list[CallEvent]:
        """Recompute who is in which call and report the difference."""
        current = self._collect(now_ms)
        events: list[CallEvent] = []
        for call_key in sorted(self.calls.keys() | current.keys()):
            members = current.get(call_key, {})
            call = self.calls.get(call_key)
            if call is None:
                if not members:
                    continue
                oldest = min(members.values(), key=_age_order)
                call = ActiveCall(
                    room_id=self.room_id,
                    application=call_key[0],
                    slot_id=call_key[1],
                    started_at_ms=now_ms,
                    started_by=oldest.user_id,
                    intent=_first_intent(oldest, members.values()),
                )
                self.calls[call_key] = call
                events.append(
                    CallStarted(
                        room_id=self.room_id,
                        slot_id=call.slot_id,
                        application=call.application,
                        started_by=call.started_by,
                        intent=call.intent,
                        at_ms=now_ms,
                    )
                )
            events.extend(self._diff_members(call, members, now_ms))
            if not call.members:
                del self.calls[call_key]
                events.append(
                    CallEnded(
                        room_id=self.room_id,
                        slot_id=call.slot_id,
                        application=call.application,
                        at_ms=now_ms,
                        started_at_ms=call.started_at_ms,
                        duration_ms=max(0, now_ms - call.started_at_ms),
                        peak_participants=call.peak_participants,
                        participants_total=len(call.participants),
                    )
                )
        return events

    def _diff_members(
        self, call: ActiveCall, members: Mapping[MemberKey, Membership], now_ms: int
    ) -> list[CallEvent]:
        events: list[CallEvent] = []
        # Refreshes (new expiry, new transports) keep the member and its since_ms.
        for key in members.keys() & call.members.keys():
            call.members[key] = _member(members[key], call.members[key].since_ms)
        if call.intent is None:
            call.intent = _first_intent(None, members.values())
        # Joins before leaves, so a device switch reads as "still there" (other_devices > 0).
        for key in sorted(members.keys() - call.members.keys()):
            m = members[key]
            others = call.devices_of(m.user_id)
            call.members[key] = _member(m, now_ms)
            call.participants.add(m.user_id)
            events.append(
                MemberJoined(
                    room_id=self.room_id,
                    slot_id=call.slot_id,
                    application=call.application,
                    user_id=m.user_id,
                    device_id=m.device_id,
                    at_ms=now_ms,
                    other_devices=others,
                )
            )
        for key in sorted(call.members.keys() - members.keys()):
            gone = call.members.pop(key)
            reason = self._why_gone((call.application, call.slot_id), key, now_ms)
            events.append(
                MemberLeft(
                    room_id=self.room_id,
                    slot_id=call.slot_id,
                    application=call.application,
                    user_id=gone.user_id,
                    device_id=gone.device_id,
                    at_ms=now_ms,
                    reason=reason,
                    other_devices=call.devices_of(gone.user_id),
                )
            )
        # Peak after the whole step: a simultaneous join + leave is not two people at once.
        call.peak_participants = max(call.peak_participants, len(call.user_ids()))
        return events


def _age_order(m: Membership) -> tuple[int, str, str]:
    return (m.created_ts, m.user_id, m.device_id)


def _first_intent(first: Membership | None, members: Iterable[Membership]) -> str | None:
    """The starter's intent, else the oldest member's that states one."""
    if first is not None and first.intent is not None:
        return first.intent
    for m in sorted(members, key=_age_order):
        if m.intent is not None:
            return m.intent
    return None
