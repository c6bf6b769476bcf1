"""The LiveKit SDK alone, no rtcbot code: does memory come back after each connection?

What the soak benches leave after each recording (≈ 0.5 MB) could be ours or the SDK's. This
bench answers that with the SDK by itself: `rtc.Room` connects, stays `--hold` seconds,
disconnects; N times in a row, in three rooms:

- an empty room (the bot alone),
- a room where the Go farm's `--speakers` talk, tracks subscribed (as the recorder does),
- the same room with `auto_subscribe` off (nothing received: only the participants' info),
- a room whose speakers (a Go farm of their own each time) leave before the bot does, as
  at the end of a call.

After each connection: the process's RSS and the bytes malloc holds in use (`mallinfo2`,
with the heap trimmed and Python's collector run first), so what grows is memory nobody
freed, not memory an allocator kept. It also prints the native library's build version.

    python -m rtcbot_stack.netns -- .venv/bin/python -m bench.sdk_soak --connections 20

`--quick` (3 connections of 1 s in each room) runs in `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import subprocess
import tempfile
from pathlib import Path

from livekit import rtc

from bench.common import rss_mb
from bench.go_farm import farm_command, write_voices
from rtcbot.media.heap import release_memory
from rtcbot.media.livekit_settings import LiveKitSettings
from rtcbot.media.tokens import mint_local_token
from rtcbot_stack import netns
from rtcbot_stack.stack import Stack, StackSettings
from tests.stack.eventually import eventually

_LIBC = ctypes.CDLL("libc.so.6")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
    ]


_LIBC.mallinfo2.restype = _MallInfo2


def malloc_in_use_mb() -> float:
    """Bytes handed out by malloc and not yet freed, in all arenas."""
    release_memory()  # the collector run and free pages handed back first
    info = _LIBC.mallinfo2()
    return float(info.uordblks + info.hblkhd) / 1e6


def ffi_version() -> str:
    """The native library's own build version (uniffi's `build_version`)."""

    class Buffer(ctypes.Structure):
        _fields_ = [
            ("capacity", ctypes.c_uint64),
            ("len", ctypes.c_uint64),
            ("data", ctypes.POINTER(ctypes.c_uint8)),
        ]

    class Status(ctypes.Structure):
        _fields_ = [("code", ctypes.c_int8), ("buf", Buffer)]

    lib = Path(rtc.__file__).parent / "resources" / "liblivekit_ffi.so"
    try:
        fn = ctypes.CDLL(str(lib)).uniffi_livekit_ffi_fn_func_build_version
    except (OSError, AttributeError):
        return "unknown"
    fn.restype = Buffer
    status = Status()
    out = fn(ctypes.byref(status))
    return bytes(out.data[: out.len]).decode() if status.code == 0 else "unknown"


async def connections(
    settings: LiveKitSettings, room: str, count: int, hold: float, subscribe: bool
) -> list[tuple[float, float]]:
    """(RSS, malloc in use) after each of `count` connections to `room`."""
    after = []
    for _ in range(count):
        access = mint_local_token(settings, room, "@rtcbot:localhost:RTCBOT", "recorder")
        lk = rtc.Room()
        await lk.connect(access.url, access.jwt, rtc.RoomOptions(auto_subscribe=subscribe))
        await asyncio.sleep(hold)
        await lk.disconnect()
        del lk
        in_use = malloc_in_use_mb()
        after.append((rss_mb(os.getpid()), in_use))
    return after


async def leaving_first(
    settings: LiveKitSettings, stack: Stack, voices: Path, count: int, hold: float, speakers: int
) -> list[tuple[float, float]]:
    """As `connections`, but the speakers leave the room before the bot disconnects."""
    after = []
    for n in range(count):
        farm = farm_command(stack, speakers, f"ends-{n}", voices)
        await a_call_that_ends(settings, farm, f"ends-{n}", speakers, hold)
        in_use = malloc_in_use_mb()
        after.append((rss_mb(os.getpid()), in_use))
    return after


async def a_call_that_ends(
    settings: LiveKitSettings, farm_cmd: list[str], room: str, speakers: int, hold: float
) -> None:
    """The bot joins the farm's room; the farm's speakers leave; then the bot does."""
    farm = subprocess.Popen(farm_cmd, stderr=subprocess.DEVNULL)  # noqa: ASYNC220 - seconds
    access = mint_local_token(settings, room, "@rtcbot:localhost:RTCBOT", "recorder")
    lk = rtc.Room()
    try:
        await lk.connect(access.url, access.jwt)
        await eventually(
            lambda: len(lk.remote_participants) >= speakers,
            timeout=20,
            what="the speakers in the room",
            interval=0.1,
            failure=TimeoutError,
        )
        await asyncio.sleep(hold)
    finally:
        farm.terminate()
        farm.wait(15)  # the farm exits at once on SIGTERM
    await eventually(
        lambda: not lk.remote_participants,
        timeout=20,
        what="the speakers gone",
        interval=0.1,
        failure=TimeoutError,
    )
    await lk.disconnect()


async def run(count: int, speakers: int, hold: float) -> None:
    state = Path(tempfile.mkdtemp(prefix="rtcbot-sdksoak-"))
    stack = Stack(StackSettings(state_dir=state, netns=netns.current(), demo_room=False)).start()
    key, secret = stack.secrets["livekit_api_key"], stack.secrets["livekit_api_secret"]
    settings = LiveKitSettings(url=stack.livekit.url, api_key=key, api_secret=secret)
    voices = write_voices(state / "voices")
    farm = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
        farm_command(stack, speakers, "talk", voices), stderr=subprocess.DEVNULL
    )
    print(f"livekit {rtc.__version__}, native library {ffi_version()}")
    try:
        await asyncio.sleep(3)
        rooms = [
            ("empty room", "empty", True),
            (f"{speakers} speakers, subscribed", "talk", True),
            (f"{speakers} speakers, not subscribed", "talk", False),
        ]
        for label, room, subscribe in [*rooms, (f"{speakers} speakers who leave first", "", True)]:
            if room:
                after = await connections(settings, room, count, hold, subscribe)
            else:
                after = await leaving_first(settings, stack, voices, count, hold, speakers)
            (rss0, use0), (rss1, use1) = after[0], after[-1]
            each = max(1, count - 1)
            print(
                f"{label:>28}: {count} connections: RSS {rss0:.1f} → {rss1:.1f} MB "
                f"({(rss1 - rss0) / each:+.2f} each), malloc in use {use0:.1f} → {use1:.1f} MB "
                f"({(use1 - use0) / each:+.2f} each)",
                flush=True,
            )
    finally:
        farm.terminate()
        farm.wait(15)
        stack.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--connections", type=int, default=20)
    p.add_argument("--speakers", type=int, default=4)
    p.add_argument("--hold", type=float, default=3.0, help="seconds in the room each time")
    p.add_argument("--quick", action="store_true", help="3 connections of 1 s in each room")
    a = p.parse_args()
    asyncio.run(run(3, 2, 1.0) if a.quick else run(a.connections, a.speakers, a.hold))
