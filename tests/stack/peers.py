"""Real LiveKit peers (the `livekit` Python SDK): publish a sine tone or speech (espeak-ng),
or record what they hear."""

from __future__ import annotations

import asyncio
import contextlib
import io
import subprocess
from collections import defaultdict
from datetime import timedelta

import numpy as np
from livekit import api, rtc

from rtcbot.media.participant import release_room
from rtcbot.media.stream_close import close_audio_stream

SAMPLE_RATE = 48_000
FRAME_MS = 20


def mint_token(
    api_key: str,
    api_secret: str,
    room: str,
    identity: str,
    publish: bool = True,
    subscribe: bool = True,
) -> str:
    grants = api.VideoGrants(
        room_join=True, room=room, can_publish=publish, can_subscribe=subscribe
    )
    return (
        api.AccessToken(api_key, api_secret)
        .with_identity(identity)
        .with_name(identity)
        .with_grants(grants)
        .with_ttl(timedelta(minutes=30))
        .to_jwt()
    )


def sine(
    freq: float, seconds: float, rate: int = SAMPLE_RATE, amplitude: float = 0.5
) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * amplitude * 32767).astype(np.int16)


def speech(text: str, voice: str = "en-us", words_per_minute: int = 150) -> np.ndarray:
    """`text` spoken by espeak-ng, as int16 mono at 48 kHz."""
    import soundfile as sf

    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(words_per_minute), "--stdout", text],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    data, rate = sf.read(io.BytesIO(wav), dtype="float32")
    n = int(len(data) * SAMPLE_RATE / rate)
    resampled = np.interp(np.arange(n) * rate / SAMPLE_RATE, np.arange(len(data)), data)
    return (resampled * 0.8 * 32767).astype(np.int16)


def dominant_frequency(samples: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    if len(samples) == 0:
        return 0.0
    x = samples.astype(np.float64) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(x))
    spectrum[0] = 0
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0


class Peer:
    """One participant. Publishes a tone (`publish_tone`) and/or records remote audio."""

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self.room = rtc.Room()
        self.heard: dict[str, list[np.ndarray]] = defaultdict(list)
        self._tasks: list[asyncio.Task[None]] = []
        self._streams: list[rtc.AudioStream] = []
        self.room.on("track_subscribed", self._on_track)

    async def connect(self, url: str, token: str) -> None:
        # connect_timeout, never asyncio.wait_for around connect (cancelling it kills the process: media/participant.py)
        await self.room.connect(
            url, token, rtc.RoomOptions(auto_subscribe=True, connect_timeout=10)
        )

    def _on_track(
        self,
        track: rtc.Track,
        _pub: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        if track.kind != rtc.TrackKind.KIND_AUDIO:
            return
        stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
        self._streams.append(stream)
        self._tasks.append(asyncio.ensure_future(self._read(stream, participant.identity)))

    async def _read(self, stream: rtc.AudioStream, identity: str) -> None:
        async for ev in stream:
            self.heard[identity].append(np.frombuffer(bytes(ev.frame.data), dtype=np.int16))

    def samples_from(self, identity: str) -> np.ndarray:
        chunks = self.heard.get(identity) or []
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)

    async def publish_tone(self, freq: float) -> None:
        source = rtc.AudioSource(SAMPLE_RATE, 1)
        track = rtc.LocalAudioTrack.create_audio_track(f"tone-{freq:g}", source)
        opts = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await self.room.local_participant.publish_track(track, opts)
        self._tasks.append(asyncio.ensure_future(self._play(source, freq)))

    async def publish_samples(self, samples: np.ndarray, name: str = "speech") -> None:
        """Publish a microphone track that plays `samples` once (int16, 48 kHz), then silence;
        `play` plays more on the same track."""
        source = rtc.AudioSource(SAMPLE_RATE, 1)
        track = rtc.LocalAudioTrack.create_audio_track(name, source)
        opts = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await self.room.local_participant.publish_track(track, opts)
        self._queue: list[np.ndarray] = [samples]
        self.played = asyncio.Event()
        self._tasks.append(asyncio.ensure_future(self._play_queue(source)))

    def play(self, samples: np.ndarray) -> None:
        self.played.clear()
        self._queue.append(samples)

    async def _play_queue(self, source: rtc.AudioSource) -> None:
        n = SAMPLE_RATE * FRAME_MS // 1000
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = 0
        pending = np.zeros(0, dtype=np.int16)
        while True:
            if not len(pending) and self._queue:
                pending = self._queue.pop(0)
            if len(pending):
                data, pending = pending[:n], pending[n:]
                if len(data) < n:
                    data = np.concatenate([data, np.zeros(n - len(data), dtype=np.int16)])
                if not len(pending) and not self._queue:
                    self.played.set()
            else:
                data = np.zeros(n, dtype=np.int16)
            await source.capture_frame(rtc.AudioFrame(data.tobytes(), SAMPLE_RATE, 1, n))
            sent += 1
            delay = start + sent * FRAME_MS / 1000 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)

    async def _play(self, source: rtc.AudioSource, freq: float) -> None:
        n = SAMPLE_RATE * FRAME_MS // 1000
        phase = 0
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = 0
        while True:
            t = (np.arange(n) + phase) / SAMPLE_RATE
            data = (np.sin(2 * np.pi * freq * t) * 0.5 * 32767).astype(np.int16)
            phase += n
            frame = rtc.AudioFrame(data.tobytes(), SAMPLE_RATE, 1, n)
            await source.capture_frame(frame)
            sent += 1
            # Pace in real time (the source queue would otherwise accept a burst).
            delay = start + sent * FRAME_MS / 1000 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        # Bounded: after `ping timeout` the SDK's close can wait forever (stream_close.py).
        for stream in self._streams:
            await close_audio_stream(stream)
        await release_room(self.room)
