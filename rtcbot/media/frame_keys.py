"""LiveKit frame encryption for one encrypted call: the key ring of the bot's rooms there.

Element Call encrypts every participant's media with that participant's own key (HKDF key
material, a key ring of 256 indexes; livekit-client `src/e2ee/`). The bot's participant in such
a call, and its links to the call's other SFUs, connect with `e2ee_options()`, the settings
verified against livekit-client (tests/browser/test_encrypted_call.py): HKDF (the SDK's default PBKDF2
gives silence both ways), ring 256, ratchet window 10, failure tolerance 10 (the SDK's
default -1 never reports a failure), AES-GCM.

The key provider belongs to the FFI room, so every room connected for the call is attached
here right after its connect (`attach`, a `Participant.after_connect` hook) and gets every key
known so far; keys that arrive later go to every attached room. The bot's own key is set
before anything is published, and its sender is switched explicitly (`use_own` →
`set_key_index` on the local frame cryptors): `set_key` alone leaves the sender at index 0,
and a sender without a key at its index drops every frame.

Decryption states (`e2ee_state_changed`) are kept per participant identity: the recorder
writes a speaker only while that speaker decrypts (`decrypting`), since an undecryptable
stream arrives as silence, not as noise.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from livekit import rtc

from rtcbot.rtc.e2ee_keys import INDEX_COUNT, MediaKey

RATCHET_WINDOW = 10
FAILURE_TOLERANCE = 10
# States in which a participant's frames decrypt (a ratchet is a successful decryption).
DECRYPTING = frozenset({"OK", "KEY_RATCHETED"})
StateCallback = Callable[[str, str, bool], None]  # (identity, state name, is the bot itself)


def e2ee_options() -> rtc.E2EEOptions:
    return rtc.E2EEOptions(
        key_provider_options=rtc.KeyProviderOptions(
            key_derivation_function=rtc.KeyDerivationFunction.HKDF,
            key_ring_size=INDEX_COUNT,
            ratchet_window_size=RATCHET_WINDOW,
            failure_tolerance=FAILURE_TOLERANCE,
        ),
        encryption_type=rtc.EncryptionType.GCM,
    )


def state_name(state: int) -> str:
    try:
        return str(rtc.EncryptionState.Name(state))  # type: ignore[arg-type]
    except ValueError:
        return f"STATE_{state}"


@dataclass
class ParticipantState:
    state: str
    since: float  # monotonic
    changes: int = 0


class FrameKeys:
    """The frame keys of one call, applied to every LiveKit room the bot has in it."""

    def __init__(
        self,
        log: logging.Logger,
        *,
        on_state: StateCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.on_state = on_state
        self._clock = clock
        self._remote: dict[str, dict[int, bytes]] = {}  # identity → index → key
        self._own: dict[int, bytes] = {}
        self.own_index: int | None = None  # what the bot's sender encrypts with
        self._rooms: dict[int, tuple[rtc.Room, list[tuple[str, Any]]]] = {}
        self.states: dict[str, ParticipantState] = {}
        self.own_state: ParticipantState | None = None

    # -- what the media side asks -----------------------------------------------------------
    @staticmethod
    def options() -> rtc.E2EEOptions:
        return e2ee_options()

    def decrypting(self, identity: str) -> bool:
        st = self.states.get(identity)
        return st is not None and st.state in DECRYPTING

    @property
    def rooms(self) -> list[rtc.Room]:
        return [room for room, _handlers in self._rooms.values()]

    # -- rooms ------------------------------------------------------------------------------
    def attach(self, room: rtc.Room) -> None:
        """A room of the call has just connected (with `options()`): give it every key."""
        if id(room) in self._rooms:
            return
        handlers: list[tuple[str, Any]] = [
            ("e2ee_state_changed", lambda p, st: self._on_state(room, p, st)),
            ("local_track_published", lambda _pub, _track: self._switch(room)),
            ("local_track_republished", lambda _pub, _sid: self._switch(room)),
            ("disconnected", lambda _reason: self.detach(room)),
        ]
        for event, handler in handlers:
            room.on(event, handler)  # type: ignore[arg-type]
        self._rooms[id(room)] = (room, handlers)
        provider = self._provider(room)
        if provider is None:
            self.log.error("an encrypted call's LiveKit room has no key provider")
            return
        for identity, keys in self._remote.items():
            for index, key in keys.items():
                self._set(provider, identity, index, key)
        own = room.local_participant.identity
        for index, key in self._own.items():
            self._set(provider, own, index, key)
        self._switch(room)

    def detach(self, room: rtc.Room) -> None:
        entry = self._rooms.pop(id(room), None)
        if entry is None:
            return
        for event, handler in entry[1]:
            with contextlib.suppress(Exception):
                room.off(event, handler)  # type: ignore[arg-type]

    def close(self) -> None:
        for room in self.rooms:
            self.detach(room)

    # -- keys -------------------------------------------------------------------------------
    def set_remote(self, identity: str, key: MediaKey) -> bool:
        """A member's key (from its Olm message); False when it was already set."""
        ring = self._remote.setdefault(identity, {})
        if ring.get(key.index) == key.key:
            return False
        ring[key.index] = key.key
        for room in self.rooms:
            provider = self._provider(room)
            if provider is not None:
                self._set(provider, identity, key.index, key.key)
        return True

    def forget(self, identity: str) -> None:
        """The member left: its keys are not applied to rooms connected from now on."""
        self._remote.pop(identity, None)
        self.states.pop(identity, None)

    def set_own(self, key: MediaKey) -> None:
        """The bot's own key at its index; the sender keeps its index until `use_own`."""
        self._own[key.index] = key.key
        for room in self.rooms:
            provider = self._provider(room)
            if provider is not None:
                self._set(provider, room.local_participant.identity, key.index, key.key)

    def use_own(self, index: int) -> None:
        """Encrypt from now on with the own key at `index` (it must be set)."""
        self.own_index = index
        for room in self.rooms:
            self._switch(room)

    # -- internals --------------------------------------------------------------------------
    def _provider(self, room: rtc.Room) -> rtc.e2ee.KeyProvider | None:
        try:
            return room.e2ee_manager.key_provider
        except Exception:  # not connected (no manager yet) or connected without E2EE
            return None

    def _set(self, provider: rtc.e2ee.KeyProvider, identity: str, index: int, key: bytes) -> None:
        try:
            provider.set_key(identity, key, index)
        except Exception as e:
            self.log.warning("setting a frame key for %s failed: %s", identity, e)

    def _switch(self, room: rtc.Room) -> None:
        """Move the bot's own frame cryptors (one per published track) to its key index."""
        if self.own_index is None:
            return
        try:
            own = room.local_participant.identity
            for cryptor in room.e2ee_manager.frame_cryptors():
                if cryptor.participant_identity == own and cryptor.key_index != self.own_index:
                    cryptor.set_key_index(self.own_index)
        except Exception as e:
            self.log.warning("switching the bot's frame key to %s failed: %s", self.own_index, e)

    def _on_state(self, room: rtc.Room, participant: rtc.Participant, state: int) -> None:
        name = state_name(state)
        identity = participant.identity
        now = self._clock()
        own = identity == room.local_participant.identity
        if own:
            old = self.own_state
            self.own_state = ParticipantState(name, now, (old.changes + 1) if old else 1)
            if name not in DECRYPTING:
                # A sender without a key at its index sends nothing at all (interop notes).
                self.log.warning("the bot's own frame encryption is %s", name)
        else:
            old = self.states.get(identity)
            if old is None or old.state != name:
                self.states[identity] = ParticipantState(
                    name, now, (old.changes + 1) if old else 1
                )
            self.log.info("frame decryption of %s: %s", identity, name)
        if self.on_state is not None:
            try:
                self.on_state(identity, name, own)
            except Exception:
                self.log.exception("frame key state callback failed")
