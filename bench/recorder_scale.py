"""Recorder scale: how many speakers one core records in real time with 0 dropped frames.

The recorder (rtcbot.media.recorder, as the bot runs it: hidden subscribe-only token, one
Ogg/Opus file per speaker plus the mix) runs in this process pinned to CPU 0; N speakers
publish speech-like audio from a separate process pinned to CPU 1 (bench/publisher_farm.py).
For each N: record `--seconds`, then report CPU used by this process (one core = 100 %),
dropped frames, and the recorded length of every file against the wall-clock length.

    python -m rtcbot_stack.netns -- .venv/bin/python -m bench.recorder_scale --sizes 4,8,16,24,32
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from livekit import api

from rtcbot.config import LiveKitSettings
from rtcbot.media.participant import Participant
from rtcbot.media.recorder import Recorder
from rtcbot.media.tokens import SfuAccess, mint_local_token
from rtcbot_stack import netns
from rtcbot_stack.paths import MAUBOT_PYTHON, ROOT
from rtcbot_stack.stack import Stack, StackSettings


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def measure(stack: Stack, n: int, seconds: float, workdir: Path) -> dict[str, float]:
    key, secret = stack.secrets["livekit_api_key"], stack.secrets["livekit_api_secret"]
    room = f"scale-{n}-{int(time.time())}"
    farm = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
        [
            str(MAUBOT_PYTHON),
            "-m",
            "bench.publisher_farm",
            str(n),
            stack.livekit.url,
            key,
            secret,
            room,
            "1",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        lk = api.LiveKitAPI(stack.livekit.url, key, secret)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            parts = (
                await lk.room.list_participants(api.ListParticipantsRequest(room=room))
            ).participants
            if sum(len(p.tracks) for p in parts) >= n:
                break
            await asyncio.sleep(0.5)
        await lk.aclose()
        settings = LiveKitSettings(url=stack.livekit.url, api_key=key, api_secret=secret)

        async def access() -> SfuAccess:
            return mint_local_token(settings, room, "@rtcbot:localhost:RTCBOT", "recorder")

        recorder = Recorder(
            Participant(access, logging.getLogger("bench")), workdir / str(n), "bench"
        )
        await recorder.start()
        await asyncio.sleep(3)  # all tracks subscribed and flowing
        c0, t0 = cpu_s(), time.monotonic()
        await asyncio.sleep(seconds)
        c1, t1 = cpu_s(), time.monotonic()
        status = recorder.status()
        result = await recorder.stop()
        wall = result.duration_ms / 1000
        tracks = [f for f in result.files if f.kind == "participant"]
        shortest = min((f.duration_ms / 1000 for f in tracks), default=0.0)
        return {
            "n": n,
            "tracks": len(tracks),
            "cpu": (c1 - c0) / (t1 - t0),
            "dropped": result.dropped_frames,
            "recorded_s": wall,
            "shortest_s": shortest,
            "live_participants": len(status.participants),
        }
    finally:
        farm.terminate()
        farm.wait(10)


async def run(sizes: list[int], seconds: float) -> None:
    os.sched_setaffinity(0, {0})
    state = Path(tempfile.mkdtemp(prefix="rtcbot-recscale-"))
    stack = Stack(StackSettings(state_dir=state, netns=netns.current(), demo_room=False)).start()
    try:
        print(
            f"{'speakers':>8} {'files':>5} {'CPU (1 core=100%)':>18} {'per track':>9} "
            f"{'dropped':>7} {'recorded/wall':>13}",
            flush=True,
        )
        for n in sizes:
            r = await measure(stack, n, seconds, state / "rec")
            ratio = r["shortest_s"] / r["recorded_s"] if r["recorded_s"] else 0
            print(
                f"{n:8d} {int(r['tracks']):5d} {r['cpu']:17.0%} {r['cpu'] / n:9.1%} "
                f"{int(r['dropped']):7d} {ratio:13.3f}",
                flush=True,
            )
            if r["cpu"] > 0.95 or r["dropped"] > 0:
                break
    finally:
        stack.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="4,8,16,24,32,48,64")
    p.add_argument("--seconds", type=float, default=20)
    a = p.parse_args()
    asyncio.run(run([int(x) for x in a.sizes.split(",")], a.seconds))
    sys.exit(0)
