"""The recorder alone, N recordings in a row: does memory come back? (no Matrix, no speech)

Each recording: the recorder (as recorder_scale runs it) joins a LiveKit room where the Go
farm's speakers talk, records for `--seconds`, stops. After each: this process's RSS,
Python's live objects and tracemalloc's traced memory, with glibc's heap trimmed first, so
what grows is memory that nobody freed, not memory an allocator kept; the process's threads
and the recorder's file writers still alive (each held an encoder with a thread per CPU).

    python -m rtcbot_stack.netns -- .venv/bin/python -m bench.recorder_soak --recordings 30

`--quick` (3 recordings of 2 s) runs in `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import subprocess
import tempfile
import tracemalloc
from pathlib import Path

from bench.common import rss_mb
from bench.go_farm import farm_command, write_voices
from rtcbot.media.audio_files import OggOpusFile
from rtcbot.media.heap import release_memory
from rtcbot.media.livekit_settings import LiveKitSettings
from rtcbot.media.participant import Participant
from rtcbot.media.recorder import Recorder
from rtcbot.media.tokens import SfuAccess, mint_local_token
from rtcbot_stack import netns
from rtcbot_stack.stack import Stack, StackSettings


async def run(recordings: int, speakers: int, seconds: float) -> None:
    state = Path(tempfile.mkdtemp(prefix="rtcbot-recsoak-"))
    stack = Stack(StackSettings(state_dir=state, netns=netns.current(), demo_room=False)).start()
    key, secret = stack.secrets["livekit_api_key"], stack.secrets["livekit_api_secret"]
    voices = write_voices(state / "voices")
    farm = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
        farm_command(stack, speakers, "soak", voices), stderr=subprocess.DEVNULL
    )
    settings = LiveKitSettings(url=stack.livekit.url, api_key=key, api_secret=secret)

    async def access() -> SfuAccess:
        return mint_local_token(settings, "soak", "@rtcbot:localhost:RTCBOT", "recorder")

    try:
        await asyncio.sleep(3)
        tracemalloc.start()
        pid, rss = os.getpid(), []
        for n in range(1, recordings + 1):
            participant = Participant(access, logging.getLogger("bench.soak"))
            recorder = Recorder(participant, state / "rec" / str(n), "soak")
            await recorder.start()
            await asyncio.sleep(seconds)
            result = await recorder.stop()
            del recorder, participant
            release_memory()
            rss.append(rss_mb(pid))
            print(
                f"recording {n:3d}: {len(result.files)} files; RSS {rss[-1]:6.1f} MB, "
                f"{len(gc.get_objects())} Python objects, "
                f"{tracemalloc.get_traced_memory()[0] / 1e6:.1f} MB traced; "
                f"{len(os.listdir('/proc/self/task'))} threads, "
                f"{sum(isinstance(o, OggOpusFile) for o in gc.get_objects())} file writers alive",
                flush=True,
            )
        grow = (rss[-1] - rss[0]) / max(1, recordings - 1)
        print(
            f"{recordings} recordings: RSS {rss[0]:.1f} → {rss[-1]:.1f} MB ({grow:+.2f} MB each)"
        )
    finally:
        farm.terminate()
        farm.wait(15)
        stack.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--recordings", type=int, default=30)
    p.add_argument("--speakers", type=int, default=4)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--quick", action="store_true", help="3 recordings of 2 s")
    a = p.parse_args()
    asyncio.run(run(3, 2, 2.0) if a.quick else run(a.recordings, a.speakers, a.seconds))
