"""Recorder scale: how many speakers one core records in real time with 0 dropped frames.

The recorder (rtcbot.media.recorder, as the bot runs it: hidden subscribe-only token, one
Ogg/Opus file per speaker plus the mix) runs in this process pinned to CPU 0; N speakers
publish speech-like audio from a separate process pinned to CPU 1 (bench/publisher_farm.py).
For each N: record `--seconds`, then report CPU used by this process (one core = 100 %),
dropped frames, and the recorded length of every file against the wall-clock length.

`--modes plain,encrypted` (the default: both, one after the other for each N): in the
encrypted runs every speaker frame-encrypts its audio with a key of its own, as Element Call
does in an encrypted room, and the recorder decrypts with the bot's key ring
(media/frame_keys.py: HKDF, ring 256); its files must hold audio (a decryption that failed
would give files of silence, which the "silent files" column counts).

    python -m rtcbot_stack.netns -- .venv/bin/python -m bench.recorder_scale --sizes 4,8,16,24,32

`--quick` (4 speakers for 3 s in each mode) runs in `make test`.
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

import numpy as np
import soundfile as sf
from livekit import api

from bench.bare_subscriber import measure_bare
from bench.common import process_cpu_s
from bench.go_farm import binary, write_voices
from bench.publisher_farm import farm_key, speaker_identity
from rtcbot.media.frame_keys import FrameKeys
from rtcbot.media.livekit_settings import LiveKitSettings
from rtcbot.media.participant import Participant
from rtcbot.media.recorder import Recorder
from rtcbot.media.tokens import SfuAccess, mint_local_token
from rtcbot.rtc.e2ee_keys import MediaKey
from rtcbot_stack import netns
from rtcbot_stack.paths import MAUBOT_PYTHON, ROOT
from rtcbot_stack.stack import Stack, StackSettings
from tests.stack.peers import mint_token


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def silent(path: Path) -> bool:
    """A file with (almost) nothing in it: what undecryptable audio leaves."""
    data, _rate = sf.read(str(path), dtype="int16")
    return len(data) == 0 or float(np.sqrt(np.mean(np.asarray(data, np.float64) ** 2))) < 50


async def measure(
    stack: Stack,
    n: int,
    seconds: float,
    workdir: Path,
    encrypted: bool = False,
    profile: Path | None = None,
    go_farm: Path | None = None,
) -> dict[str, float]:
    key, secret = stack.secrets["livekit_api_key"], stack.secrets["livekit_api_secret"]
    room = f"scale-{n}-{int(time.time())}"
    mode = "encrypted" if encrypted else "plain"
    args = [stack.livekit.url, key, secret, room]
    if go_farm is not None:  # pre-encoded voices (go_farm.py); CPU 1 for all its threads
        farm_cmd = [str(go_farm), str(n), *args, str(workdir / "voices"), mode]
    else:
        farm_cmd = [str(MAUBOT_PYTHON), "-m", "bench.publisher_farm", str(n), *args, "1", mode]
    farm = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
        farm_cmd,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=(workdir / f"farm-{n}-{mode}.log").open("wb"),
        preexec_fn=lambda: os.sched_setaffinity(0, {1}),
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
        # The floor: the SDK's bare delivery of the same tracks, on the same core, just before.
        keys = {speaker_identity(i): farm_key(i) for i in range(n)} if encrypted else None
        bare_token = mint_token(key, secret, room, "@bare:localhost:BARE", publish=False)
        bare = await measure_bare(stack.livekit.url, bare_token, n, seconds, cpu_s, keys)
        settings = LiveKitSettings(url=stack.livekit.url, api_key=key, api_secret=secret)

        async def access() -> SfuAccess:
            return mint_local_token(settings, room, "@rtcbot:localhost:RTCBOT", "recorder")

        participant = Participant(access, logging.getLogger("bench"))
        if encrypted:
            keys = FrameKeys(logging.getLogger("bench.keys"))
            for i in range(n):
                keys.set_remote(speaker_identity(i), MediaKey(0, farm_key(i)))
            participant.use_frame_keys(keys)
        mode = "encrypted" if encrypted else "plain"
        recorder = Recorder(participant, workdir / f"{mode}-{n}", "bench")
        await recorder.start()
        await asyncio.sleep(3)  # all tracks subscribed and flowing
        spy = _profiler(profile, seconds) if profile else None
        others = (farm.pid, stack.livekit.child.pid)  # type: ignore[union-attr]
        o0, c0, t0 = [process_cpu_s(p) for p in others], cpu_s(), time.monotonic()
        await asyncio.sleep(seconds)
        o1, c1, t1 = [process_cpu_s(p) for p in others], cpu_s(), time.monotonic()
        if spy is not None:
            spy.wait(30)
        status = recorder.status()
        result = await recorder.stop()
        print(
            f"  dropped: {recorder._writes.dropped_chunks} chunks behind the writer, "
            f"{recorder._segments.dropped_samples()} samples late or overlapping",
            file=sys.stderr,
            flush=True,
        )
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
            "silent": sum(1 for f in tracks if silent(f.path)),
            "bare_cpu": bare["cpu"],
            "farm_cpu": (o1[0] - o0[0]) / (t1 - t0),
            "sfu_cpu": (o1[1] - o0[1]) / (t1 - t0),
            "bare_tracks": bare["tracks"],
        }
    finally:
        farm.terminate()
        farm.wait(10)


def _profiler(out: Path, seconds: float) -> subprocess.Popen[bytes]:
    """py-spy sampling this process (native frames too) for `seconds`, as a flame graph."""
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--native",  # PyAV's encoder, numpy: native frames (this pauses the process
            "--rate",  # at each sample, so a profiled run may drop frames: profile apart)
            "100",
            "--duration",
            str(int(seconds)),
            "--pid",
            str(os.getpid()),
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=out.with_suffix(".log").open("wb"),
    )


async def run(
    sizes: list[int],
    seconds: float,
    modes: list[str],
    profile: Path | None = None,
    farm: str = "go",
) -> None:
    # The stack (LiveKit, Synapse, maubot) may use both CPUs (on one, beside 100 publishers,
    # LiveKit fails handshakes); the recorder is held to CPU 0 and the publishers to CPU 1.
    state = Path(tempfile.mkdtemp(prefix="rtcbot-recscale-"))
    stack = Stack(StackSettings(state_dir=state, netns=netns.current(), demo_room=False)).start()
    os.sched_setaffinity(0, {0})
    (state / "rec").mkdir()
    go_farm = None
    if farm == "go":
        go_farm = binary()
        write_voices(state / "rec" / "voices")
    try:
        print(
            f"{'mode':>9} {'speakers':>8} {'files':>5} {'CPU (1 core=100%)':>18} "
            f"{'per track':>9} {'dropped':>7} {'recorded/wall':>13} {'silent files':>12} "
            f"{'bare SDK':>8} {'ratio':>5} {'farm':>5} {'SFU':>5}",
            flush=True,
        )
        done: set[str] = set()  # modes that reached their limit
        for n in sizes:
            for mode in modes:
                if mode in done:
                    continue
                out = (
                    profile.with_name(f"{profile.stem}-{mode}-{n}{profile.suffix}")
                    if profile
                    else None
                )
                r = await measure(
                    stack, n, seconds, state / "rec", mode == "encrypted", out, go_farm
                )
                ratio = r["shortest_s"] / r["recorded_s"] if r["recorded_s"] else 0
                print(
                    f"{mode:>9} {n:8d} {int(r['tracks']):5d} {r['cpu']:17.0%} "
                    f"{r['cpu'] / n:9.1%} {int(r['dropped']):7d} {ratio:13.3f} "
                    f"{int(r['silent']):12d} {r['bare_cpu']:8.0%} "
                    f"{r['cpu'] / r['bare_cpu'] if r['bare_cpu'] else 0:5.2f} "
                    f"{r['farm_cpu']:5.0%} {r['sfu_cpu']:5.0%}",
                    flush=True,
                )
                if r["cpu"] > 0.95 or r["dropped"] > 0:
                    done.add(mode)
            if done >= set(modes):
                break
    finally:
        stack.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="4,8,16,24,32,48,64")
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--modes", default="plain,encrypted", help="plain, encrypted or both")
    p.add_argument("--quick", action="store_true", help="4 speakers, 3 s, both modes")
    p.add_argument(
        "--farm", choices=("go", "python"), default="go", help="publishers: go_farm.py or SDK"
    )
    p.add_argument("--profile", type=Path, help="py-spy flame graph per run: FILE-<mode>-<n>.svg")
    a = p.parse_args()
    if a.quick:
        a.sizes, a.seconds = "4", 3.0
    sizes = [int(x) for x in a.sizes.split(",")]
    asyncio.run(run(sizes, a.seconds, a.modes.split(","), a.profile, a.farm))
    sys.exit(0)
