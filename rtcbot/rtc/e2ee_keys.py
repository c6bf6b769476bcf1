"""Element Call's media keys (`io.element.call.encryption_keys`): the message, the keys the bot
received, and when the bot's own key rotates. Pure: no maubot, no I/O, time is passed in.

In an encrypted room every Element Call device encrypts its media (LiveKit frame encryption)
with a key of its own and sends that key, Olm-encrypted, to every other member's device
(matrix-js-sdk `src/matrixrtc/ToDeviceKeyTransport.ts`, `RTCEncryptionManager.ts`):

- the message: `{"keys": {"index", "key"}, "room_id", "member": {"claimed_device_id", "id"},
  "session", "sent_ts"}`; checked as js-sdk's `getValidEventContent` does, plus an index in
  0–255 (the frame trailer holds it in one byte). Keys are read from any base64 flavour and
  written as padded standard base64 of 16 random bytes, as js-sdk does;
- received keys (`InboundKeys`): per (user, device) and index, the later one wins (js-sdk's
  `OutdatedKeyFilter` with the receive time); a key is bound to the LiveKit identity of the
  sender's membership (`Membership.rtc_backend_identity`) and held until that membership
  appears (`keysWithoutMatchingRTCMembership`);
- the bot's own key (`OutboundKeys`), mirroring `RTCEncryptionManager`: index 0 at join, used
  at once; a member who joins within 10 s of the last rotation gets the current key; a leave,
  or a join when the key is older, rotates to `(index + 1) % 256`, sends it to everyone and
  uses it 1 s later; one rollout at a time, requests during one coalesced into one more.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .session import CallMember

KEY_EVENT_TYPE: Final = "io.element.call.encryption_keys"
# MSC4143 "current" keys (matrix-rust-rtc; Element Call 0.30 receives them).
CURRENT_KEY_EVENT_TYPES: Final = ("org.matrix.msc4143.rtc.encryption_key", "m.rtc.encryption_key")
KEY_BYTES: Final = 16  # what js-sdk generates
MAX_KEY_BYTES: Final = 64  # HKDF takes any length; EC sends 16, MSC4143's draft 32
INDEX_COUNT: Final = 256  # key indexes 0–255: one byte in the frame trailer, EC's key ring
GRACE_MS: Final = 10_000  # js-sdk keyRotationGracePeriodMs
USE_KEY_DELAY_MS: Final = 1_000  # js-sdk useKeyDelay (Element Call leaves the default)
HOLD_MS: Final = 10 * 60_000  # keys of a device with no membership are kept this long
MAX_DEVICES: Final = 1_000  # senders per room whose keys are kept (bounded memory)

_B64: Final = re.compile(r"[A-Za-z0-9+/]*={0,2}")

Device = tuple[str, str]  # (user ID, device ID)
# A member device as js-sdk's sharedWith entries know it: a re-created membership (another
# created_ts) is a new joiner.
Target = tuple[str, str, int]  # (user ID, device ID, membership created_ts)


class KeyMessageError(ValueError):
    """The content is not a usable media-key message; the text says why (never the key)."""


@dataclass(frozen=True)
class MediaKey:
    index: int
    key: bytes = field(repr=False)  # never in a repr, hence never in a log line


@dataclass(frozen=True)
class KeyMessage:
    room_id: str
    user_id: str  # the sender, as the Olm session authenticated it
    device_id: str  # member.claimed_device_id
    member_id: str  # member.id, else "{sender}:{claimed_device_id}" as js-sdk
    key: MediaKey
    sent_ts: int | None


# -- encoding ---------------------------------------------------------------------------------
def decode_key(text: object) -> bytes:
    """A key from standard or URL-safe base64, padded or not (js-sdk's `decodeBase64`)."""
    if not isinstance(text, str) or not text:
        raise KeyMessageError("keys.key is missing or not a string")
    std = text.strip().replace("-", "+").replace("_", "/")
    bare = std.rstrip("=")
    if not _B64.fullmatch(std) or len(bare) % 4 == 1:
        raise KeyMessageError("keys.key is not base64")
    try:
        raw = base64.b64decode(bare + "=" * (-len(bare) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise KeyMessageError("keys.key is not base64") from None
    if not raw:
        raise KeyMessageError("keys.key is empty")
    if len(raw) > MAX_KEY_BYTES:
        raise KeyMessageError(f"keys.key is {len(raw)} bytes long (at most {MAX_KEY_BYTES})")
    return raw


def encode_key(key: bytes) -> str:
    """Padded standard base64, as js-sdk's `encodeBase64` (24 characters for 16 bytes)."""
    return base64.b64encode(key).decode("ascii")


def new_key(random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> bytes:
    return random_bytes(KEY_BYTES)


# -- the message ------------------------------------------------------------------------------
def _index(value: object) -> int:
    # js-sdk only asks for a number; a fraction or a value outside the key ring reaches no
    # LiveKit key slot, so it is refused here rather than silently wrapped.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise KeyMessageError("keys.index is missing or not a number")
    if isinstance(value, float) and not value.is_integer():
        raise KeyMessageError("keys.index is not a whole number")
    index = int(value)
    if not 0 <= index < INDEX_COUNT:
        raise KeyMessageError(f"keys.index {index} is outside 0–{INDEX_COUNT - 1}")
    return index


def _key_of(content: Mapping[str, Any]) -> MediaKey:
    # js-sdk 45 and MSC4143 "current" send `media_key`; `keys` is kept "for backwards
    # compatibility" (ToDeviceKeyTransport): the new field first, as js-sdk 45 reads.
    for name in ("media_key", "keys"):
        found = content.get(name)
        if isinstance(found, Mapping):
            return MediaKey(_index(found.get("index")), decode_key(found.get("key")))
    raise KeyMessageError("media_key (or keys) is missing or not an object")


def parse_key_message(
    content: object, sender: str, *, room_id: str | None = None, device_id: str | None = None
) -> KeyMessage:
    """The message's content, validated; `room_id`: the room it must be for, if known;
    `device_id`: the sending device the Olm session authenticated (MSC4143 "current" keys
    name no device: it comes from the decryption). Raises KeyMessageError.

    Three shapes: js-sdk ≤ 44 (`keys`, `member.{id, claimed_device_id}`, `session`,
    `sent_ts`), js-sdk 45 (adds `media_key` and `member_id`, drops `session` and `sent_ts`)
    and MSC4143 current (`member_id`, `media_key`, `format`; no `member`)."""
    if not isinstance(content, Mapping):
        raise KeyMessageError("the content is not an object")
    room = content.get("room_id")
    if not isinstance(room, str) or not room:
        raise KeyMessageError("room_id is missing")
    if room_id is not None and room != room_id:
        raise KeyMessageError("room_id is not this room")
    key = _key_of(content)
    member = content.get("member")
    if member is not None and not isinstance(member, Mapping):
        raise KeyMessageError("member is not an object")
    member = member or {}
    device = member.get("claimed_device_id")
    if device is None and "member" not in content:
        device = device_id
    if not isinstance(device, str) or not device:
        raise KeyMessageError("member.claimed_device_id is missing")
    member_id = content.get("member_id")
    if not isinstance(member_id, str) or not member_id:
        member_id = member.get("id")
    if not isinstance(member_id, str) or not member_id:
        member_id = f"{sender}:{device}"
    sent = content.get("sent_ts")
    sent_ts = int(sent) if isinstance(sent, int | float) and not isinstance(sent, bool) else None
    return KeyMessage(room, sender, device, member_id, key, sent_ts)


def key_message_content(
    room_id: str, member_id: str, device_id: str, key: MediaKey, sent_ts: int
) -> dict[str, Any]:
    """What the bot sends: both shapes at once — js-sdk 45's `media_key`/`member_id` and the
    fields of js-sdk ≤ 44's `ToDeviceKeyTransport.sendKey`, which js-sdk 45 still reads. The
    member id is the bot's membership id (js-sdk 45 binds a key to it)."""
    wire_key = {"index": key.index, "key": encode_key(key.key)}
    return {
        "keys": wire_key,
        "media_key": dict(wire_key),
        "room_id": room_id,
        "member_id": member_id,
        "member": {"claimed_device_id": device_id, "id": member_id},
        "session": {"call_id": "", "application": "m.call", "scope": "m.room"},
        "sent_ts": sent_ts,
    }


def current_key_content(room_id: str, member_id: str, key: MediaKey) -> dict[str, Any]:
    """The bot's key for an MSC4143 "current" peer, in its dialect
    (`org.matrix.msc4143.rtc.encryption_key`; matrix-rust-rtc's key content)."""
    return {
        "room_id": room_id,
        "member_id": member_id,
        "media_key": {"index": key.index, "key": encode_key(key.key)},
        "format": 0,
    }


# -- the call's devices -----------------------------------------------------------------------
@dataclass(frozen=True)
class MemberDevice:
    """A device in the call as the key exchange sees it."""

    user_id: str
    device_id: str
    identity: str  # its LiveKit participant identity
    created_ts: int
    # Other identities its participant may have (Membership.identities): keys go to all.
    aliases: tuple[str, ...] = ()
    dialect: str = "element_call"  # "current" (MSC4143): it reads rtc.encryption_key

    @property
    def device(self) -> Device:
        return (self.user_id, self.device_id)

    @property
    def target(self) -> Target:
        return (self.user_id, self.device_id, self.created_ts)


def member_devices(
    members: Iterable[CallMember], own: Device | None = None
) -> dict[Device, MemberDevice]:
    """The call's devices but the bot's own, by (user, device); of several memberships of one
    device the newest counts (js-sdk finds the membership by user and device)."""
    out: dict[Device, MemberDevice] = {}
    for m in members:
        if (m.user_id, m.device_id) == own:
            continue
        ms = m.membership
        first, *others = ms.identities
        found = MemberDevice(
            m.user_id, m.device_id, first, ms.created_ts, tuple(others), ms.dialect
        )
        old = out.get(found.device)
        if old is None or found.created_ts >= old.created_ts:
            out[found.device] = found
    return out


# -- keys received ----------------------------------------------------------------------------
@dataclass
class _Held:
    keys: dict[int, tuple[bytes, int]] = field(default_factory=dict)  # index → (key, recv ms)
    member_id: str = ""
    last_index: int = 0
    last_ms: int = 0


class InboundKeys:
    """The media keys one room's call members sent the bot, per (user, device) and index."""

    def __init__(self, *, hold_ms: int = HOLD_MS, max_devices: int = MAX_DEVICES) -> None:
        self.hold_ms = hold_ms
        self.max_devices = max_devices
        self._held: dict[Device, _Held] = {}

    def add(self, msg: KeyMessage, received_ms: int, in_call: Container[Device] = ()) -> bool:
        """Store a received key; False when a later one for that index is already stored
        (js-sdk's OutdatedKeyFilter: keys can arrive out of order after a quick rejoin), or
        when the store is full of devices `in_call` (their keys are never evicted: the bot
        would stop decrypting people who are talking)."""
        device = (msg.user_id, msg.device_id)
        held = self._held.get(device)
        if held is None:
            if len(self._held) >= self.max_devices:
                evictable = [d for d in self._held if d not in in_call]
                if not evictable:
                    return False
                del self._held[min(evictable, key=lambda d: self._held[d].last_ms)]
            held = self._held[device] = _Held()
        old = held.keys.get(msg.key.index)
        if old is not None and old[1] > received_ms:
            return False
        held.keys[msg.key.index] = (msg.key.key, received_ms)
        held.member_id = msg.member_id
        held.last_index, held.last_ms = msg.key.index, received_ms
        return True

    def keys_of(self, device: Device) -> list[MediaKey]:
        """Every stored key of the device, the latest received last."""
        held = self._held.get(device)
        if held is None:
            return []
        ordered = sorted(held.keys.items(), key=lambda kv: kv[1][1])
        return [MediaKey(index, key) for index, (key, _ms) in ordered]

    def latest(self, device: Device) -> tuple[int, int] | None:
        """(index, receive time in ms) of the device's last key, or None."""
        held = self._held.get(device)
        return None if held is None else (held.last_index, held.last_ms)

    def devices(self) -> list[Device]:
        return list(self._held)

    def bound(self, members: Mapping[Device, MemberDevice]) -> list[tuple[str, MediaKey]]:
        """(LiveKit identity, key) for every stored key whose device is in the call now."""
        return [
            (identity, key)
            for device in self._held
            if device in members
            for identity in (members[device].identity, *members[device].aliases)
            for key in self.keys_of(device)
        ]

    def waiting(self, members: Mapping[Device, MemberDevice]) -> list[Device]:
        """Devices whose keys arrived but whose membership has not (yet)."""
        return [d for d in self._held if d not in members]

    def prune(self, members: Mapping[Device, MemberDevice], now_ms: int) -> list[Device]:
        """Forget devices that are not in the call and sent nothing for `hold_ms`."""
        gone = [
            d
            for d, h in self._held.items()
            if d not in members and now_ms - h.last_ms >= self.hold_ms
        ]
        for d in gone:
            del self._held[d]
        return gone


# -- the bot's own key ------------------------------------------------------------------------
@dataclass(frozen=True)
class Rollout:
    """Send `key` to `targets`. `switch`: the bot's sender does not use this key yet; it
    switches `USE_KEY_DELAY_MS` after the key was sent (`OutboundKeys.sent`)."""

    key: MediaKey
    targets: tuple[Target, ...]
    switch: bool
    rotated: bool  # a new key was made for this rollout


@dataclass
class _Outbound:
    key: MediaKey
    created_ms: int
    shared: set[Target] = field(default_factory=set)


class OutboundKeys:
    """The bot's own media key in one call: when to make, send and use a key.

    The driver calls `update(members, now)` on every membership change; a Rollout it returns
    is sent, then `sent(rollout, now, delivered)` (or `failed`) is reported; when that returns
    a time, the driver switches its sender at that time (`switch_due`). While a rollout runs,
    `update` returns None and remembers to run once more (`again`), as js-sdk coalesces."""

    def __init__(
        self,
        *,
        grace_ms: int = GRACE_MS,
        use_delay_ms: int = USE_KEY_DELAY_MS,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self.grace_ms = grace_ms
        self.use_delay_ms = use_delay_ms
        self._random = random_bytes
        self.current: _Outbound | None = None
        self.in_use: MediaKey | None = None  # the key the bot's sender encrypts with
        self.busy = False
        self.again = False
        self.use_at: int | None = None
        self.rotations = 0

    def _make(self, index: int, now_ms: int) -> _Outbound:
        self.current = _Outbound(MediaKey(index, new_key(self._random)), now_ms)
        return self.current

    def update(self, members: Iterable[Target], now_ms: int) -> Rollout | None:
        """The call's members (but the bot) now; what to send, or None (nothing, or a rollout
        is running: then `again` is set)."""
        if self.busy:
            self.again = True
            return None
        self.again = False
        now = set(members)
        current = self.current
        if current is None:  # joining: index 0, used at once
            current = self._make(0, now_ms)
            self.in_use = current.key
        # A device whose membership was re-created may have lost our key: a joiner again.
        renewed = {(u, d) for u, d, _ts in now}
        shared = {t for t in current.shared if (t[0], t[1]) not in renewed or t in now}
        current.shared = shared
        left = shared - now
        joined = now - shared
        rotated = False
        if left or (joined and now_ms - current.created_ms >= self.grace_ms):
            current = self._make((current.key.index + 1) % INDEX_COUNT, now_ms)
            self.rotations += 1
            rotated = True
            targets = now
        else:
            targets = joined
        switch = self.in_use is None or current.key != self.in_use
        if not targets:
            # Nobody to tell: a new key would reach nobody; keep it for the next joiner,
            # who then gets it and the sender switches to it (js-sdk would never switch).
            return None
        self.busy = True
        return Rollout(current.key, tuple(sorted(targets)), switch, rotated)

    def sent(
        self, rollout: Rollout, now_ms: int, delivered: Iterable[Target] | None = None
    ) -> int | None:
        """The rollout's key went out (to `delivered`, default all targets). Returns when the
        sender switches to it (ms), or None when the rollout is over."""
        reached = set(rollout.targets if delivered is None else delivered)
        if self.current is not None and self.current.key == rollout.key:
            self.current.shared |= reached
            if rollout.switch and self.in_use != rollout.key:
                self.use_at = now_ms + self.use_delay_ms
                return self.use_at
        self.busy = False
        return None

    def failed(self, rollout: Rollout) -> None:
        """Nothing went out; the next update tries again (its targets are still not shared)."""
        self.busy = False

    def switch_due(self, now_ms: int) -> MediaKey | None:
        """At `use_at`: the key the sender now uses; the rollout is over."""
        if self.use_at is None or now_ms < self.use_at or self.current is None:
            return None
        self.use_at = None
        self.busy = False
        self.in_use = self.current.key
        return self.in_use
