"""In an encrypted call the recorder writes a speaker's audio only while it decrypts.

A stream the bot cannot decrypt still delivers frames, as digital silence (the SDK's frame cryptor
hands on zeros when a frame fails to decrypt):
written, it would look like a speaker who said nothing. The gate drops those frames (the
speaker's file and the mix get a gap there, as for a muted speaker) and counts them, so the
summary can say whose audio could not be decrypted and for how long. In an unencrypted call
(no key ring) everything passes. A track published unencrypted into an encrypted call is
dropped too, and counted apart: nothing proves who sent it (any SFU on the way could have
made or changed it; security review M2), so the summary says whose it was instead.
"""

from __future__ import annotations

from collections.abc import Callable

from rtcbot.media.frame_keys import FrameKeys


class DecryptionGate:
    def __init__(self, keys: Callable[[], FrameKeys | None], frame_s: float) -> None:
        self._keys = keys  # read at every frame: the key ring comes with the connection
        self.frame_s = frame_s
        self._refused: dict[str, int] = {}  # stream key → frames dropped
        self._plain: set[str] = set()  # stream keys of tracks published unencrypted
        self._unencrypted: dict[str, int] = {}  # stream key → frames dropped as unencrypted

    def track(self, key: str, encrypted: bool) -> None:
        """A stream starts: was its track published encrypted?"""
        if encrypted:
            self._plain.discard(key)
        else:
            self._plain.add(key)

    def allows(self, key: str, identity: str) -> bool:
        ring = self._keys()
        if ring is None:
            return True
        if key in self._plain:
            self._unencrypted[key] = self._unencrypted.get(key, 0) + 1
            return False
        if ring.decrypting(identity):
            return True
        self._refused[key] = self._refused.get(key, 0) + 1
        return False

    def seconds(self) -> dict[str, float]:
        """Stream key → seconds of audio that could not be decrypted."""
        return {k: round(n * self.frame_s, 1) for k, n in self._refused.items()}

    def plain_seconds(self) -> dict[str, float]:
        """Stream key → seconds of audio dropped because it came unencrypted."""
        return {k: round(n * self.frame_s, 1) for k, n in self._unencrypted.items()}
