"""Text to speech for announcements: a tiny engine interface, espeak-ng, and a chime.

Every engine returns int16 mono PCM at 48 kHz, the rate the announcer publishes at.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import struct
import wave
from typing import Protocol, runtime_checkable

import numpy as np

RATE = 48_000
MAX_TEXT = 1000  # characters; announcements are short, this bounds synthesis time
_ESPEAK_TIMEOUT = 20.0


class TtsError(Exception):
    """Synthesis failed; `message` is a sentence meant for a person."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@runtime_checkable
class TtsEngine(Protocol):
    name: str

    async def synthesize(self, text: str) -> np.ndarray:
        """Speech for `text` as int16 mono samples at 48 kHz."""
        ...


def resample(samples: np.ndarray, rate_in: int, rate_out: int = RATE) -> np.ndarray:
    """int16 mono from `rate_in` to `rate_out` with LiveKit's native (libsoxr) resampler."""
    if rate_in == rate_out or not len(samples):
        return samples.astype(np.int16, copy=False)
    from livekit import rtc  # the native library loads lazily, only when speech is made

    resampler = rtc.AudioResampler(
        rate_in, rate_out, num_channels=1, quality=rtc.AudioResamplerQuality.HIGH
    )
    frames = resampler.push(bytearray(np.ascontiguousarray(samples, dtype=np.int16).tobytes()))
    frames += resampler.flush()
    if not frames:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate([np.frombuffer(bytes(f.data), dtype=np.int16) for f in frames])


def parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """(int16 mono samples, sample rate) from WAV bytes, tolerating streamed headers.

    espeak-ng writing to a pipe cannot seek back, so its RIFF/data sizes are placeholders;
    the data chunk is then taken to run to the end of the bytes.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise TtsError("The speech engine did not produce WAV audio.")
    pos = 12
    rate = channels = bits = 0
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = pos + 8
        if cid == b"fmt ":
            _fmt, channels, rate, _br, _align, bits = struct.unpack(
                "<HHIIHH", data[body : body + 16]
            )
        elif cid == b"data":
            # A placeholder size (0, or larger than what arrived) means "to the end".
            end = body + size if 0 < size <= len(data) - body else len(data)
            if bits != 16 or channels < 1 or rate <= 0:
                raise TtsError("The speech engine produced WAV audio in an unexpected format.")
            raw = data[body:end]
            raw = raw[: len(raw) // (2 * channels) * 2 * channels]
            samples = np.frombuffer(raw, dtype="<i2").astype(np.int16)
            if channels > 1:
                samples = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
            return samples, rate
        pos = body + size + (size & 1)
    # Fall back on the stdlib for anything unusual.
    with wave.open(io.BytesIO(data)) as w:
        raw = w.readframes(w.getnframes())
        return np.frombuffer(raw, dtype="<i2").astype(np.int16), w.getframerate()


class EspeakEngine:
    """espeak-ng in a subprocess (text on stdin, never on the command line)."""

    name = "espeak-ng"

    def __init__(
        self,
        binary: str = "espeak-ng",
        voice: str = "en",
        speed: int = 160,
        timeout: float = _ESPEAK_TIMEOUT,
    ) -> None:
        self.binary = binary
        self.voice = voice
        self.speed = speed
        self.timeout = timeout

    async def synthesize(self, text: str) -> np.ndarray:
        text = " ".join(text.split())[:MAX_TEXT]
        if not text:
            return np.zeros(0, dtype=np.int16)
        try:
            proc = await asyncio.create_subprocess_exec(
                self.binary,
                "--stdout",
                "-v",
                self.voice,
                "-s",
                str(self.speed),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise TtsError(f"Could not start {self.binary}: {exc.strerror or exc}.") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(text.encode("utf-8")), self.timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise TtsError(f"{self.binary} took longer than {self.timeout:g} s.") from None
        if proc.returncode != 0:
            reason = err.decode("utf-8", "replace").strip()[:200] or f"exit {proc.returncode}"
            raise TtsError(f"{self.binary} failed: {reason}.")
        samples, rate = parse_wav(out)
        return resample(samples, rate, RATE)


def available_engine(binary: str = "espeak-ng", voice: str = "en") -> TtsEngine | None:
    """The espeak-ng engine if the program is installed, else None (announce with a chime)."""
    path = shutil.which(binary)
    return EspeakEngine(path, voice=voice) if path else None


def chime(rate: int = RATE) -> np.ndarray:
    """A short, soft two-note chime (E5 then A5, bell-like decay), int16 mono, ~0.6 s."""

    def note(freq: float, seconds: float) -> np.ndarray:
        t = np.arange(int(seconds * rate)) / rate
        envelope = np.exp(-t * 6.0) * np.minimum(1.0, t / 0.005)  # 5 ms attack, no click
        tone = np.sin(2 * np.pi * freq * t) + 0.25 * np.sin(2 * np.pi * 2 * freq * t)
        return tone * envelope

    first = note(659.25, 0.6)
    second = note(880.0, 0.6)
    out = np.zeros(int(0.78 * rate))
    out[: len(first)] += first
    start = int(0.18 * rate)
    out[start : start + len(second)] += second[: len(out) - start]
    fade = int(0.02 * rate)
    out[-fade:] *= np.linspace(1.0, 0.0, fade)
    out *= 0.35 / max(1e-9, float(np.max(np.abs(out))))
    return np.round(out * 32767).astype(np.int16)
