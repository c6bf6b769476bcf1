"""The LiveKit SDK's bare per-frame delivery: what receiving N audio tracks costs with nothing
done to the frames (no files, no mix, no Python per frame beyond taking it).

The floor under the recorder: subscribe to every track of a room with the same AudioStream
settings as the recorder (48 kHz mono, 100 ms frames) and count frames. Encrypted rooms are
decrypted with the speakers' keys, as the recorder does. bench/recorder_scale.py measures it
in the same run, on the same core and the same publishers, right before the recorder.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from livekit import rtc

from rtcbot.media.frame_keys import e2ee_options
from rtcbot.media.participant import release_room
from rtcbot.media.recorder import FRAME_MS, RATE
from rtcbot.media.stream_close import close_audio_stream


class BareSubscriber:
    def __init__(self, keys: dict[str, bytes] | None = None) -> None:
        self.room = rtc.Room()
        self.keys = keys
        self.frames = 0
        self._streams: list[rtc.AudioStream] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.room.on("track_subscribed", self._on_track)

    async def connect(self, url: str, token: str) -> None:
        options = rtc.RoomOptions(
            auto_subscribe=True,
            connect_timeout=20,
            encryption=e2ee_options() if self.keys is not None else None,
        )
        await self.room.connect(url, token, options)
        if self.keys is not None:
            provider = self.room.e2ee_manager.key_provider
            assert provider is not None
            for identity, key in self.keys.items():
                provider.set_key(identity, key, 0)

    def _on_track(self, track: rtc.Track, *_: object) -> None:
        if track.kind != rtc.TrackKind.KIND_AUDIO:
            return
        stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1, frame_size_ms=FRAME_MS)
        self._streams.append(stream)
        self._tasks.append(asyncio.ensure_future(self._count(stream)))

    async def _count(self, stream: rtc.AudioStream) -> None:
        async for _ev in stream:
            self.frames += 1

    @property
    def tracks(self) -> int:
        return len(self._streams)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for stream in self._streams:
            await close_audio_stream(stream)
        await release_room(self.room)  # bounded, and no listener task left behind


async def measure_bare(
    url: str,
    token: str,
    n: int,
    seconds: float,
    cpu_s: Callable[[], float],
    keys: dict[str, bytes] | None,
) -> dict[str, float]:
    """CPU (one core = 1.0) and frames per second of a bare subscriber to `n` tracks."""
    sub = BareSubscriber(keys)
    await sub.connect(url, token)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while sub.tracks < n and loop.time() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)  # every stream flowing
        c0, t0, f0 = cpu_s(), loop.time(), sub.frames
        await asyncio.sleep(seconds)
        c1, t1, f1 = cpu_s(), loop.time(), sub.frames
        return {"cpu": (c1 - c0) / (t1 - t0), "tracks": sub.tracks, "fps": (f1 - f0) / (t1 - t0)}
    finally:
        await sub.close()
