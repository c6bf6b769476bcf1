"""Aligning, padding, mixing and incremental Ogg/Opus writing, with synthetic tones only."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rtcbot.media.audio_files import (
    RATE,
    Mixer,
    OggOpusFile,
    SegmentWriter,
    StreamClock,
    sanitize_filename,
    soft_clip,
    speaking_samples,
)
from tests.stack.peers import dominant_frequency, rms, sine

CHUNK = RATE // 10  # the recorder's 100 ms frames


def read(path: Path) -> np.ndarray:
    data, rate = sf.read(str(path), dtype="int16")
    assert rate == RATE
    return np.asarray(data)


def first_loud(samples: np.ndarray, threshold: int = 2000) -> float:
    """Seconds until the first sample louder than `threshold`."""
    idx = np.flatnonzero(np.abs(samples.astype(np.int32)) > threshold)
    return float(idx[0]) / RATE if len(idx) else float("inf")


def feed(writer: SegmentWriter, key: str, tone: np.ndarray, start: float) -> None:
    """Write `tone` in 100 ms chunks starting at `start` seconds."""
    pos = int(start * RATE)
    for i in range(0, len(tone), CHUNK):
        writer.add(key, key.title(), "DEV", pos + i, tone[i : i + CHUNK])


def peak_near(samples: np.ndarray, freq: float) -> float:
    """Spectral magnitude around `freq` relative to the strongest peak (1.0 = strongest)."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / RATE)
    band = (freqs > freq - 10) & (freqs < freq + 10)
    return float(spectrum[band].max() / spectrum.max())


# -- helpers ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Alice Smith", "Alice_Smith"),
        ("../../etc/passwd", "etc_passwd"),
        ("Zoë Ñúñez", "Zoe_Nunez"),
        ("名前", "unknown"),
        ("a/b\\c:d*e?f", "a_b_c_d_e_f"),
        ("   ", "unknown"),
        ("x" * 200, "x" * 60),
        (".hidden", "hidden"),
    ],
)
def test_sanitize_filename(text: str, expected: str) -> None:
    assert sanitize_filename(text) == expected


def test_soft_clip_is_linear_below_the_knee_and_never_clips() -> None:
    quiet = np.array([0, 1000, -20000, 26000], dtype=np.int32)
    assert np.array_equal(soft_clip(quiet), quiet.astype(np.int16))
    loud = np.array([40000, -70000, 32767 * 4], dtype=np.int32)
    out = soft_clip(loud)
    assert out.dtype == np.int16
    assert out[0] > 26000 and out[1] < -26000 and out[2] > 26000  # bent, not wrapped
    assert np.abs(out.astype(np.int32)).max() <= 32767
    ramp = soft_clip(np.linspace(0, 32767 * 3, 1000))
    assert np.all(np.diff(ramp.astype(np.int32)) >= 0)  # monotonic: no fold-over


def test_speaking_samples_counts_loud_20ms_blocks() -> None:
    speech = np.concatenate([np.zeros(RATE, np.int16), sine(300, 0.5), np.zeros(RATE, np.int16)])
    assert speaking_samples(speech) == pytest.approx(RATE // 2, abs=RATE // 50)
    assert speaking_samples(np.zeros(RATE, np.int16)) == 0


def test_stream_clock_anchors_keeps_contiguity_and_detects_gaps() -> None:
    clock = StreamClock(RATE, gap_threshold=1.0)
    # First chunk arrives 2.1 s into the segment: it covers 2.0–2.1 s.
    assert clock.place(round(2.1 * RATE), CHUNK) == 2 * RATE
    # Jittery arrival does not move contiguous chunks.
    assert clock.place(round(2.25 * RATE), CHUNK) == round(2.1 * RATE)
    assert clock.place(round(2.28 * RATE), CHUNK) == round(2.2 * RATE)
    # A burst after a stall (late, then many at once) keeps its place.
    assert clock.place(round(3.0 * RATE), CHUNK) == round(2.3 * RATE)
    assert clock.place(round(3.0 * RATE), CHUNK) == round(2.4 * RATE)
    assert clock.reanchored == 0
    # Frames stopped for 3 s: re-anchored at the wall clock.
    assert clock.place(round(5.6 * RATE), CHUNK) == round(5.5 * RATE)
    assert clock.reanchored == 1


def test_mixer_sums_and_drops_what_is_too_late() -> None:
    mixer = Mixer()
    mixer.add(0, np.full(100, 1000, np.int16))
    mixer.add(50, np.full(100, 2000, np.int16))
    out = mixer.take_until(120)
    assert len(out) == 120
    assert out[0] == 1000 and out[60] == 3000 and out[110] == 2000
    mixer.add(100, np.full(40, 500, np.int16))  # 20 samples are already out
    assert mixer.dropped_samples == 20
    rest = mixer.take_until(200)
    assert rest[0] == 2500 and rest[30] == 0 and len(rest) == 80


# -- the segment writer --------------------------------------------------------------------
def test_late_joiner_gap_and_mix_are_time_aligned(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path, "2026-01-01 call", part=1)
    a, b = sine(440, 3.0), sine(660, 2.0)
    # Alice from 0 s, with a gap 1.0–2.0 s (track unpublished, then back);
    # Bob joins at 1.5 s. Chunks of both arrive interleaved, as from the SFU.
    feed(writer, "alice", a[: RATE * 1], 0.0)
    feed(writer, "bob", b[: RATE // 2], 1.5)
    for i in range(0, RATE * 2, CHUNK):  # alice back at 2.0 s
        writer.add("alice", "Alice", "DEV", 2 * RATE + i, a[RATE + i : RATE + i + CHUNK])
    feed(writer, "bob", b[RATE // 2 :], 2.0)
    writer.advance_mix(int(1.0 * RATE))  # the recorder does this as time passes
    files = {f.key or "mix": f for f in writer.close(end=5 * RATE)}

    assert set(files) == {"alice", "bob", "mix"}
    assert files["alice"].path.name == "2026-01-01_call-Alice-DEV.ogg"
    assert files["mix"].path.name == "2026-01-01_call-mixed.ogg"
    for f in files.values():
        assert f.duration_ms == 5000
        assert f.size_bytes == f.path.stat().st_size > 0

    alice, bob, mix = (read(files[k].path) for k in ("alice", "bob", "mix"))
    for data in (alice, bob, mix):
        assert len(data) == pytest.approx(5 * RATE, abs=RATE // 100)
    assert first_loud(alice) < 0.02
    assert rms(alice[int(1.1 * RATE) : int(1.9 * RATE)]) < 100  # the gap is silent
    assert rms(alice[int(2.1 * RATE) : int(3.9 * RATE)]) > 5000
    assert rms(alice[int(4.1 * RATE) :]) < 100  # padded to the segment end
    assert dominant_frequency(alice[:RATE]) == pytest.approx(440, abs=3)
    assert first_loud(bob) == pytest.approx(1.5, abs=0.02)
    assert dominant_frequency(bob[2 * RATE : int(3.4 * RATE)]) == pytest.approx(660, abs=3)
    both = mix[int(2.0 * RATE) : int(3.5 * RATE)]
    assert peak_near(both, 440) > 0.5 and peak_near(both, 660) > 0.5
    assert np.abs(mix.astype(np.int32)).max() < 32767  # summed 2 × 0.5 FS, soft-clipped
    assert first_loud(mix) < 0.02
    assert dominant_frequency(mix[int(1.6 * RATE) : int(1.95 * RATE)]) == pytest.approx(660, abs=5)

    assert files["alice"].speaking_seconds == pytest.approx(3.0, abs=0.05)
    assert files["bob"].speaking_seconds == pytest.approx(2.0, abs=0.05)
    assert writer.dropped_samples == 0


def test_overlapping_audio_for_one_participant_is_dropped_and_counted(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path, "rec", mix=False)
    tone = sine(440, 0.3)
    writer.add("a", "A", "", 0, tone)
    writer.add("a", "A", "", int(0.2 * RATE), tone)  # 0.1 s overlaps
    (f,) = writer.close()
    assert writer.dropped_samples == int(0.1 * RATE)
    assert f.duration_ms == 500
    assert f.path.name == "rec-A.ogg"


def test_parts_and_name_collisions(tmp_path: Path) -> None:
    w1 = SegmentWriter(tmp_path, "rec", part=2, mix=False)
    w1.add("x1", "Sam", "PHONE", 0, sine(440, 0.2))
    w1.add("x2", "Sam", "PHONE", 0, sine(440, 0.2))  # same name, other identity
    names = sorted(f.path.name for f in w1.close())
    assert names == ["rec-Sam-PHONE-part2-2.ogg", "rec-Sam-PHONE-part2.ogg"]
    w2 = SegmentWriter(tmp_path, "rec", part=2, mix=False)  # files exist: never overwritten
    w2.add("x1", "Sam", "PHONE", 0, sine(440, 0.2))
    assert [f.path.name for f in w2.close()] == ["rec-Sam-PHONE-part2-3.ogg"]


def test_silent_segment_writes_nothing(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path, "rec")
    writer.advance_mix(RATE)
    assert writer.close(end=2 * RATE) == []
    assert list(tmp_path.iterdir()) == []


def test_partial_file_is_playable_while_still_being_written(tmp_path: Path) -> None:
    f = OggOpusFile(tmp_path / "live.ogg", flush_every=1.0)
    tone = sine(440, 3.0)
    for i in range(0, int(2.5 * RATE), CHUNK):
        f.write(tone[i : i + CHUNK])
    partial = read(f.path)  # the writer is still open
    assert 1.9 * RATE <= len(partial) <= 2.5 * RATE
    assert dominant_frequency(partial[RATE // 2 :]) == pytest.approx(440, abs=3)
    for i in range(int(2.5 * RATE), len(tone), CHUNK):
        f.write(tone[i : i + CHUNK])
    f.close()
    assert len(read(f.path)) == 3 * RATE


def test_file_of_a_killed_process_is_playable_up_to_the_last_flush(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, numpy as np
        from pathlib import Path
        from rtcbot.media.audio_files import SegmentWriter
        w = SegmentWriter(Path({str(tmp_path)!r}), "crash")
        t = np.arange(48000 * 3) / 48000
        x = (np.sin(2 * np.pi * 440 * t) * 16000).astype(np.int16)
        for i in range(0, len(x), 4800):
            w.add("a", "A", "", i, x[i : i + 4800])
            w.advance_mix(max(0, i - 48000))
        os._exit(9)  # no close, no atexit: like kill -9
        """
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", script], cwd=root, check=False)
    assert proc.returncode == 9
    track = read(tmp_path / "crash-A.ogg")
    assert len(track) >= 1.9 * RATE  # flushed at 2 s, minus the encoder look-ahead
    assert dominant_frequency(track) == pytest.approx(440, abs=3)
    mix = read(tmp_path / "crash-mixed.ogg")
    assert len(mix) >= 0.9 * RATE
    assert sf.info(str(tmp_path / "crash-A.ogg")).duration == pytest.approx(
        len(track) / RATE, abs=0.05
    )


def test_a_closed_file_holds_no_encoder_threads(tmp_path: Path) -> None:
    # PyAV encodes through a resampler whose filter graph runs a thread per CPU; a closed
    # file that something still references (a finished recording's writer) kept them, and
    # maubot gained two threads per file recorded (bench.soak).
    def threads() -> int:
        return len(os.listdir("/proc/self/task"))

    before = threads()
    kept = []
    for i in range(3):
        f = OggOpusFile(tmp_path / f"{i}.ogg")
        f.write(np.full(48_000, 1000, dtype=np.int16))
        f.close()
        kept.append(f)
    assert threads() == before
    assert all(f.closed and f.duration_ms == 1000 for f in kept)
