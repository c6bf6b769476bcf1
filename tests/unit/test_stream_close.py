"""A stream close that never ends is cut after its bound (stream_close.py).

The hang itself (no end-of-stream from the SDK after `ping timeout`) cannot be produced on
demand on a healthy SFU, so the stream here is a stand-in whose close waits for ever, the way
livekit 1.2's `AudioStream.aclose()` waits for its reader task."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from rtcbot.media.stream_close import close_audio_stream


class StuckStream:
    def __init__(self) -> None:
        self.reader = asyncio.ensure_future(asyncio.Event().wait())  # never set

    async def aclose(self) -> None:
        await self.reader


class QuickStream:
    closed = False

    async def aclose(self) -> None:
        self.closed = True


async def test_a_stuck_close_is_cut_and_its_reader_ends() -> None:
    stuck = StuckStream()
    ended = await close_audio_stream(cast(Any, stuck), timeout_s=0.2)
    assert ended is False
    await asyncio.sleep(0)
    assert stuck.reader.cancelled()  # nothing of it keeps running


async def test_a_normal_close_completes() -> None:
    quick = QuickStream()
    assert await close_audio_stream(cast(Any, quick), timeout_s=5) is True
    assert quick.closed
