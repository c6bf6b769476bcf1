"""N LiveKit peers in one process, each publishing speech-like audio (for bench/recorder_scale).

Speech-like: a voiced carrier (fundamental 100–250 Hz plus harmonics) shaped into ~4 syllables
per second, with pauses — the energy pattern of talk, not a steady tone.

    python -m bench.publisher_farm <N> <ws url> <api key> <api secret> <room> [cpu] [encrypted]

`encrypted`: each speaker frame-encrypts its audio as Element Call does (HKDF, its own key
`farm_key(i)` at index 0), for bench/recorder_scale.py's encrypted runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys

import numpy as np
from livekit import rtc

from rtcbot.media.frame_keys import e2ee_options
from tests.stack.peers import mint_token

RATE = 48_000
FRAME = RATE // 10  # 100 ms frames: cheap to push


def farm_key(i: int) -> bytes:
    """Speaker i's media key (16 bytes, as Element Call's)."""
    return hashlib.sha256(f"speaker{i}".encode()).digest()[:16]


def speaker_identity(i: int) -> str:
    return f"@speaker{i}:localhost:S{i}"


def speech_like(seed: int, seconds: float = 10.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    f0 = 100 + 150 * rng.random() + 20 * np.sin(2 * np.pi * 0.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voice = sum(np.sin(k * phase) / k for k in (1, 2, 3, 4))
    syllables = np.clip(np.sin(2 * np.pi * 4 * t + rng.random() * 6), 0, None) ** 2
    pauses = (np.sin(2 * np.pi * 0.25 * t + rng.random() * 6) > -0.4).astype(float)
    return (voice * syllables * pauses * 6000).astype(np.int16)


async def publish(
    i: int,
    url: str,
    key: str,
    secret: str,
    room_name: str,
    encrypted: bool = False,
    connecting: asyncio.Semaphore | None = None,
) -> None:
    identity = speaker_identity(i)
    # A few connects at a time, each retried: a hundred signalling and ICE handshakes at once
    # on a core shared with the SFU time out (the farm connected only 32 of 48 that way).
    async with connecting or asyncio.Semaphore(1):
        for attempt in range(4):
            room = rtc.Room()
            try:
                await room.connect(
                    url,
                    mint_token(key, secret, room_name, identity, subscribe=False),
                    rtc.RoomOptions(
                        auto_subscribe=False,
                        connect_timeout=20,
                        encryption=e2ee_options() if encrypted else None,
                    ),
                )
                break
            except rtc.ConnectError as e:
                print(f"speaker {i}: connect attempt {attempt + 1} failed: {e}", file=sys.stderr)
                await asyncio.sleep(1 + attempt)
        else:
            return
    if encrypted:
        provider = room.e2ee_manager.key_provider
        assert provider is not None
        provider.set_key(identity, farm_key(i), 0)
    source = rtc.AudioSource(RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track("mic", source)
    await room.local_participant.publish_track(
        track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    )
    audio = speech_like(i)
    loop = asyncio.get_running_loop()
    start, sent, pos = loop.time(), 0, 0
    while True:
        chunk = audio[pos : pos + FRAME]
        pos = (pos + FRAME) % (len(audio) - FRAME)
        await source.capture_frame(rtc.AudioFrame(chunk.tobytes(), RATE, 1, FRAME))
        sent += 1
        delay = start + sent * 0.1 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)


async def main() -> None:
    n, url, key, secret, room = int(sys.argv[1]), *sys.argv[2:6]
    if len(sys.argv) > 6:
        os.sched_setaffinity(0, {int(sys.argv[6])})
    encrypted = len(sys.argv) > 7 and sys.argv[7] == "encrypted"
    connecting = asyncio.Semaphore(4)
    await asyncio.gather(
        *(publish(i, url, key, secret, room, encrypted, connecting) for i in range(n))
    )


if __name__ == "__main__":
    asyncio.run(main())
