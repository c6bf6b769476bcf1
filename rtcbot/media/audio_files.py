"""Writing recorded audio: time alignment, silence padding, mixing and incremental Ogg/Opus.

Pure numpy + PyAV (libopus), no LiveKit: the recorder hands in int16 chunks with their sample
positions relative to the start of a segment, everything else happens here.

Crash safety: each file is an Ogg/Opus stream written page by page and flushed about once a
second of audio, so a killed process or a lost SFU leaves files that open and play up to the
last flush (libsndfile reads an Ogg stream without its end-of-stream page).

Threading: a `SegmentWriter` and its files are not thread-safe. The recorder drives each
writer from one worker thread only; the counters it reads for `status()` are plain ints.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

RATE = 48_000
# Opus encoder complexity (0-10). The encoder is most of the recorder's CPU: libsndfile runs
# it at 10 with no way to lower it (4.8 % of a core per stream, measured); libopus through PyAV
# at 1 with 60 ms frames costs ~0.8 %, and speech at 32 kbit/s "voip" sounds clear.
# (docs/BENCHMARKS.md, recorder scale).
DEFAULT_COMPRESSION = 1
OPUS_BITRATE = 32_000
OPUS_FRAME_MS = 60
# RMS of a 20 ms block (int16 scale) above which a participant counts as speaking (≈ −38 dBFS).
DEFAULT_SPEECH_THRESHOLD = 400.0
SPEECH_BLOCK = RATE // 50  # 20 ms
# Within one stream, frames follow each other on the receiver's playout clock; only a lag
# of more than this behind the wall clock is taken as a real interruption (then padded).
DEFAULT_GAP_THRESHOLD = 1.0
# Soft clipping of the mix starts at this fraction of full scale.
_KNEE = 0.8
_MAX_NAME = 60


def sanitize_filename(text: str, fallback: str = "unknown", max_len: int = _MAX_NAME) -> str:
    """A file-name fragment safe on any file system: ASCII letters, digits, `.`, `_`, `-`."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_text)
    cleaned = re.sub(r"_{2,}", "_", cleaned).strip("._-")
    cleaned = cleaned[:max_len].rstrip("._-")
    return cleaned or fallback


def soft_clip(mix: np.ndarray) -> np.ndarray:
    """Mix sum (any numeric dtype, int16 scale) to int16 without hard clipping.

    Linear below 80 % of full scale, then a tanh knee that approaches but never reaches full
    scale, so summing loud participants bends the peaks instead of wrapping or squaring them.
    """
    x = mix.astype(np.float32) / 32767.0
    mag = np.abs(x)
    over = mag > _KNEE
    if np.any(over):
        bent = _KNEE + (1.0 - _KNEE) * np.tanh((mag[over] - _KNEE) / (1.0 - _KNEE))
        x[over] = np.sign(x[over]) * bent
    return np.round(x * 32767.0).astype(np.int16)


def speaking_samples(
    samples: np.ndarray, threshold: float = DEFAULT_SPEECH_THRESHOLD, block: int = SPEECH_BLOCK
) -> int:
    """How many samples lie in 20 ms blocks whose RMS exceeds `threshold`."""
    n = len(samples) // block * block
    speaking = 0
    if n:
        blocks = samples[:n].astype(np.float32).reshape(-1, block)
        loud = np.sqrt(np.mean(blocks * blocks, axis=1)) > threshold
        speaking = int(np.count_nonzero(loud)) * block
    rest = samples[n:]
    if len(rest):
        r = rest.astype(np.float32)
        if float(np.sqrt(np.mean(r * r))) > threshold:
            speaking += len(rest)
    return speaking


class StreamClock:
    """Places the consecutive chunks of one audio stream on the segment's sample axis.

    The first chunk is anchored at the wall clock (`arrival_end` = the segment position, in
    samples, at which it arrived, i.e. where it ends). Later chunks follow contiguously; the
    stream is re-anchored only when it has fallen more than `gap_threshold` seconds behind the
    wall clock, i.e. frames really stopped coming for a while. Bursts after a stalled event
    loop arrive late but contiguous and therefore keep their place.
    """

    def __init__(self, rate: int = RATE, gap_threshold: float = DEFAULT_GAP_THRESHOLD) -> None:
        self.rate = rate
        self.gap = int(gap_threshold * rate)
        self.next_pos: int | None = None
        self.reanchored = 0

    def place(self, arrival_end: int, n: int) -> int:
        wall_start = max(0, arrival_end - n)
        if self.next_pos is None:
            pos = wall_start
        elif wall_start - self.next_pos > self.gap:
            pos = wall_start
            self.reanchored += 1
        else:
            pos = self.next_pos
        self.next_pos = pos + n
        return pos


def private_dir(directory: Path) -> None:
    """The recording's folder, readable by the bot's own user only (0700)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)


class OggOpusFile:
    """One mono Ogg/Opus file written incrementally; the write position is a sample count.

    Encoded with libopus through PyAV; Ogg pages go to disk as they fill (at most
    0.1 s behind), so a crash leaves a playable file up to that point.
    """

    def __init__(
        self,
        path: Path,
        rate: int = RATE,
        compression_level: float | None = DEFAULT_COMPRESSION,
        flush_every: float = 1.0,
    ) -> None:
        self.path = path
        self.rate = rate
        self.samples = 0
        private_dir(path.parent)
        # Owner-only from the first byte (people's voices; not the process umask's choice).
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        os.chmod(path, 0o600)
        complexity = DEFAULT_COMPRESSION if compression_level is None else int(compression_level)
        # Short Ogg pages: what is on disk is never more than ~0.1 s behind (crash safety).
        page_us = str(int(min(max(0.05, flush_every), 0.1) * 1_000_000))
        self._container: Any = av.open(
            str(path), "w", format="ogg", options={"page_duration": page_us, "flush_packets": "1"}
        )
        self._stream: Any = self._container.add_stream(
            "libopus",
            rate=rate,
            options={
                "application": "voip",
                "compression_level": str(max(0, min(10, complexity))),
                "frame_duration": str(OPUS_FRAME_MS),
                "b": str(OPUS_BITRATE),
            },
        )
        self._stream.layout = "mono"

    @property
    def closed(self) -> bool:
        return self._container is None

    def write(self, samples: np.ndarray) -> None:
        if self._container is None:
            raise ValueError(f"{self.path.name} is already closed")
        if not len(samples):
            return
        data = np.ascontiguousarray(samples, dtype=np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(data, format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self.samples
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.samples += len(samples)

    def pad_to(self, total: int) -> None:
        """Append silence until the file holds `total` samples (no-op if already longer)."""
        missing = total - self.samples
        step = self.rate * 10
        while missing > 0:
            n = min(missing, step)
            self.write(np.zeros(n, dtype=np.int16))
            missing -= n

    def flush(self) -> None:
        """Pages are written as they fill (page_duration); nothing to force here."""

    def size(self) -> int:
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0

    def close(self) -> None:
        if self._container is not None:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            # The stream's encoder holds PyAV's resampler: a filter graph with a thread per
            # CPU. Let go of it now, not when this object goes (maubot kept two threads and
            # their memory for every file ever recorded: bench.soak).
            self._container = self._stream = None

    @property
    def duration_ms(self) -> int:
        return self.samples * 1000 // self.rate


class Mixer:
    """Sums positioned chunks; `take_until` hands out finished audio in order.

    Audio for positions that were already handed out is dropped (and counted): the recorder
    takes out audio with a delay long enough that this only happens to badly late frames.
    """

    def __init__(self) -> None:
        self.base = 0  # absolute position of _buf[0]
        self._buf = np.zeros(0, dtype=np.int32)
        self._filled = 0  # samples of _buf that hold added audio
        self.dropped_samples = 0

    def add(self, pos: int, samples: np.ndarray) -> None:
        if pos < self.base:
            cut = min(self.base - pos, len(samples))
            self.dropped_samples += cut
            samples = samples[cut:]
            pos = self.base
        if not len(samples):
            return
        end = pos - self.base + len(samples)
        if end > len(self._buf):
            grown = np.zeros(max(end, len(self._buf) * 2), dtype=np.int32)
            grown[: len(self._buf)] = self._buf
            self._buf = grown
        self._buf[pos - self.base : end] += samples.astype(np.int32)
        self._filled = max(self._filled, end)

    def take_until(self, pos: int) -> np.ndarray:
        """The mixed int16 audio from `base` up to `pos` (silence where nobody spoke)."""
        n = pos - self.base
        if n <= 0:
            return np.zeros(0, dtype=np.int16)
        have = min(n, len(self._buf))
        out = np.zeros(n, dtype=np.int32)
        out[:have] = self._buf[:have]
        self._buf = self._buf[have:].copy()
        self._filled = max(0, self._filled - have)
        self.base = pos
        return soft_clip(out)

    @property
    def pending_end(self) -> int:
        """Position just after the last sample added so far."""
        return self.base + self._filled


@dataclass
class WrittenFile:
    """A finished (or, while recording, growing) file of one segment."""

    path: Path
    kind: str  # "participant" or "mix"
    key: str | None  # recorder's stream key (identity[/source]) for participant files
    display_name: str
    device: str
    samples: int
    size_bytes: int
    speaking_samples: int = 0
    rate: int = RATE

    @property
    def duration_ms(self) -> int:
        return self.samples * 1000 // self.rate

    @property
    def speaking_seconds(self) -> float:
        return self.speaking_samples / self.rate


@dataclass
class _Track:
    file: OggOpusFile
    display_name: str
    device: str
    speaking: int = 0


@dataclass
class SegmentWriter:
    """All files of one recording segment: one per participant stream key, plus the mix.

    Positions are samples since the segment started. File names are
    `<prefix>-<display>-<device>[-partN].ogg` and `<prefix>-mixed[-partN].ogg`.
    """

    directory: Path
    prefix: str
    part: int = 1
    rate: int = RATE
    mix: bool = True
    compression_level: float | None = DEFAULT_COMPRESSION
    speech_threshold: float = DEFAULT_SPEECH_THRESHOLD
    flush_every: float = 1.0
    tracks: dict[str, _Track] = field(default_factory=dict, init=False)
    dropped_samples: int = field(default=0, init=False)
    closed: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        private_dir(self.directory)
        self._names: set[str] = set()
        self._mixer = Mixer() if self.mix else None
        self._mix_file: OggOpusFile | None = None
        self._suffix = "" if self.part <= 1 else f"-part{self.part}"
        self._prefix = sanitize_filename(self.prefix, fallback="recording")

    def _path_for(self, stem: str) -> Path:
        name = f"{self._prefix}-{stem}{self._suffix}"
        candidate, n = name, 2
        while candidate in self._names or (self.directory / f"{candidate}.ogg").exists():
            candidate = f"{name}-{n}"
            n += 1
        self._names.add(candidate)
        return self.directory / f"{candidate}.ogg"

    def _open(self, stem: str) -> OggOpusFile:
        return OggOpusFile(
            self._path_for(stem), self.rate, self.compression_level, self.flush_every
        )

    def _track(self, key: str, display_name: str, device: str) -> _Track:
        track = self.tracks.get(key)
        if track is None:
            stem = sanitize_filename(display_name)
            if device:
                stem += "-" + sanitize_filename(device)
            track = _Track(self._open(stem), display_name, device)
            self.tracks[key] = track
        return track

    def add(self, key: str, display_name: str, device: str, pos: int, samples: np.ndarray) -> None:
        """Write `samples` at segment position `pos` into `key`'s file (and the mix).

        A gap before `pos` is filled with silence; a part overlapping audio already written
        for this key is dropped (counted in `dropped_samples`).
        """
        if self.closed:
            self.dropped_samples += len(samples)
            return
        track = self._track(key, display_name, device)
        if pos < track.file.samples:
            cut = min(track.file.samples - pos, len(samples))
            self.dropped_samples += cut
            samples = samples[cut:]
            pos += cut
        if not len(samples):
            return
        track.file.pad_to(pos)
        track.file.write(samples)
        track.speaking += speaking_samples(samples, self.speech_threshold)
        if self._mixer is not None:
            self._mixer.add(pos, samples)

    def advance_mix(self, until: int) -> None:
        """Write the mix up to position `until`; later arrivals before it are lost to the mix."""
        if self._mixer is None or self.closed:
            return
        start = self._mixer.base
        chunk = self._mixer.take_until(until)
        if not len(chunk):
            return
        if self._mix_file is None:
            if not self.tracks:
                return  # nobody yet: no file; the silence is padded in once someone speaks
            self._mix_file = self._open("mixed")
        self._mix_file.pad_to(start)
        self._mix_file.write(chunk)

    def flush(self) -> None:
        for track in self.tracks.values():
            track.file.flush()
        if self._mix_file is not None:
            self._mix_file.flush()

    @property
    def mix_dropped_samples(self) -> int:
        return self._mixer.dropped_samples if self._mixer is not None else 0

    def bytes_written(self) -> int:
        total = sum(t.file.size() for t in self.tracks.values())
        if self._mix_file is not None:
            total += self._mix_file.size()
        return total

    def files(self) -> list[WrittenFile]:
        """What has been written so far (sizes as on disk now)."""
        out = [
            WrittenFile(
                t.file.path,
                "participant",
                key,
                t.display_name,
                t.device,
                t.file.samples,
                t.file.size(),
                t.speaking,
                self.rate,
            )
            for key, t in self.tracks.items()
        ]
        if self._mix_file is not None:
            out.append(
                WrittenFile(
                    self._mix_file.path,
                    "mix",
                    None,
                    "mixed",
                    "",
                    self._mix_file.samples,
                    self._mix_file.size(),
                    0,
                    self.rate,
                )
            )
        return out

    def close(self, end: int | None = None) -> list[WrittenFile]:
        """Pad every file to `end` samples (the segment length), finish and close them all.

        With `end=None` files keep their own length. Returns the written files; a segment in
        which nobody spoke produces no files at all.
        """
        if self.closed:
            return self.files()
        if end is None:
            ends = [t.file.samples for t in self.tracks.values()]
            if self._mixer is not None:
                ends.append(self._mixer.pending_end)
            end = max(ends, default=0)
        if self._mixer is not None and self.tracks:
            self.advance_mix(end)
            if self._mix_file is not None:
                self._mix_file.pad_to(end)
        for track in self.tracks.values():
            track.file.pad_to(end)
        self.closed = True
        errors: list[BaseException] = []
        for f in [t.file for t in self.tracks.values()] + [self._mix_file]:
            if f is None:
                continue
            try:
                f.close()
            except Exception as exc:  # one broken file must not keep the others open
                errors.append(exc)
        if errors:
            raise errors[0]
        return self.files()
