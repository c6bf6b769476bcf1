"""What a recording is and was: its live status, and the files and speakers it produced."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .audio_files import WrittenFile

RecorderState = Literal["idle", "recording", "interrupted", "stopping", "stopped"]
StopReason = Literal["stopped", "max_duration", "sfu_lost", "room_closed", "disk_full"]


@dataclass
class RecordedFile:
    path: Path
    kind: Literal["participant", "mix"]
    identity: str | None  # LiveKit identity (None for the mix)
    display_name: str
    device: str
    segment: int
    duration_ms: int
    size_bytes: int
    speaking_seconds: float = 0.0
    offset_s: float = 0.0  # where its part starts, from the start of the recording


@dataclass
class Speaker:
    identity: str
    display_name: str
    device: str
    speaking_seconds: float


@dataclass
class RecordingResult:
    files: list[RecordedFile]
    duration_ms: int  # wall time from start to stop, over all segments
    segments: int
    speakers: list[Speaker]
    dropped_frames: int  # 100 ms frames lost to overload or overlap
    reason: StopReason
    started_at: float  # unix time
    errors: list[str] = field(default_factory=list)
    # Encrypted calls: display name → seconds of that speaker's audio the bot could not
    # decrypt (no key from them, or a wrong one); not in the files.
    undecrypted: dict[str, float] = field(default_factory=dict)
    # Display names of speakers beyond recording.max_tracks: heard, but not recorded.
    not_recorded: list[str] = field(default_factory=list)
    # Encrypted calls: display name → seconds of audio published without encryption (anyone
    # on the SFU could have sent or changed it); not in the files either.
    unencrypted: dict[str, float] = field(default_factory=dict)
    # The files really posted into the room: a retention of 0 deletes these and no others,
    # whatever the settings say by then (review finding 6).
    uploaded: list[Path] = field(default_factory=list)
    # The file messages posted for it (what `!call record delete` redacts with the summary).
    posted_events: list[str] = field(default_factory=list)
    # Seconds into the recording when the loss of the SFU was noticed, if it had not come
    # back by the stop: the files are silent from a little before, which the summary says.
    media_gone_s: float | None = None

    @property
    def total_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)

    @property
    def speaking_seconds(self) -> dict[str, float]:
        return {s.identity: s.speaking_seconds for s in self.speakers}


def recorded_file(part: int, w: WrittenFile, identity: str | None, offset: float) -> RecordedFile:
    """A file the writer finished, as the result lists it (`identity`: its speaker's)."""
    return RecordedFile(
        path=w.path,
        kind="mix" if w.kind == "mix" else "participant",
        identity=identity if w.key else None,
        display_name=w.display_name,
        device=w.device,
        segment=part,
        duration_ms=w.duration_ms,
        size_bytes=w.size_bytes,
        speaking_seconds=round(w.speaking_seconds, 2),
        offset_s=round(offset, 3),
    )


def speakers_of(files: list[RecordedFile]) -> list[Speaker]:
    """Who spoke, from the per-speaker files of all segments, the most talkative first."""
    by_key: dict[tuple[str, str], Speaker] = {}
    for f in files:
        if f.kind != "participant" or f.identity is None:
            continue
        k = (f.identity, f.device)
        s = by_key.get(k)
        if s is None:
            by_key[k] = Speaker(f.identity, f.display_name, f.device, f.speaking_seconds)
        else:
            s.speaking_seconds = round(s.speaking_seconds + f.speaking_seconds, 2)
    return sorted(by_key.values(), key=lambda s: -s.speaking_seconds)


@dataclass
class RecordingStatus:
    state: RecorderState
    duration_s: float
    segment: int
    participants: list[str]  # display names of streams being recorded now
    bytes_written: int
    dropped_frames: int
