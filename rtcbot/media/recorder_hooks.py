"""What a recording is given: one hooks protocol for what it asks of whoever runs it (instead
of a callback per question), its limits and its tuning.

The room's recording session (recording/session.py) implements it; `Standalone` answers for a
recorder that nobody else watches (benches, tests): names as LiveKit has them, every person
recorded, nothing to tell when it ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from livekit import rtc

from .audio_files import DEFAULT_COMPRESSION, DEFAULT_GAP_THRESHOLD, DEFAULT_SPEECH_THRESHOLD
from .recording_result import RecordingResult


@dataclass(frozen=True)
class RecorderLimits:
    max_seconds: float | None = None  # the recording stops by itself after this long
    max_tracks: int | None = None  # speakers beyond it are not recorded (and named as such)


@dataclass(frozen=True)
class RecorderTuning:
    """How the files are made (the defaults are what the measurements chose)."""

    mix: bool = True  # a mix of everyone besides the file per speaker
    compression_level: float | None = DEFAULT_COMPRESSION
    speech_threshold: float = DEFAULT_SPEECH_THRESHOLD
    gap_threshold: float = DEFAULT_GAP_THRESHOLD
    mix_delay: float = 1.5  # seconds the mix waits for late frames
    tick: float = 0.5  # seconds between mix advances


class RecorderHooks(Protocol):
    def name_for(self, identity: str) -> tuple[str, str] | None:
        """(display name, device) of a LiveKit identity if known now (no request); None: the
        participant's own LiveKit name is used."""
        ...

    async def resolve_name(self, identity: str) -> tuple[str, str] | None:
        """The same, looked up (awaited before a late speaker's first audio names its file);
        None: nothing better than what `name_for` said."""
        ...

    def ignores(self, participant: rtc.RemoteParticipant) -> bool:
        """Not a person of the call (agents, the bot's own participants): neither recorded nor
        counted when the recorder asks whether the room is empty."""
        ...

    def excludes(self, participant: rtc.RemoteParticipant) -> bool:
        """A participant whose audio is never recorded (not even subscribed to)."""
        ...

    def withheld(self, identity: str) -> bool:
        """Left out for now (opted out): asked on every frame, so it applies within 100 ms."""
        ...

    async def on_empty(self) -> None:
        """Nobody is left in the recorded room (while connected)."""
        ...

    async def on_stopped(self, result: RecordingResult) -> None:
        """The recording ended by itself (time limit, the SFU gone), not by `stop()`."""
        ...


class Standalone:
    """RecorderHooks for a recorder on its own."""

    def name_for(self, identity: str) -> tuple[str, str] | None:
        return None

    async def resolve_name(self, identity: str) -> tuple[str, str] | None:
        return None

    def ignores(self, participant: rtc.RemoteParticipant) -> bool:
        return not_human(participant)

    def excludes(self, participant: rtc.RemoteParticipant) -> bool:
        return False

    def withheld(self, identity: str) -> bool:
        return False

    async def on_empty(self) -> None:
        return None

    async def on_stopped(self, result: RecordingResult) -> None:
        return None


def not_human(p: rtc.RemoteParticipant) -> bool:
    """Agents, egress, SIP and other non-standard participants do not count as people."""
    return bool(p.kind != rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD)
