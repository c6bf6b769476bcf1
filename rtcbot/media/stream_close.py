"""Closing a LiveKit audio stream without waiting forever.

`AudioStream.aclose()` (livekit 1.2) disposes the stream's FFI handle and then awaits its
reader task, which ends only when the Rust side sends the stream's end-of-stream event. After
`ping timeout` / `resuming connection` that event can fail to come, and `aclose` then waits
for ever (seen in an 8-peer bench: 12 minutes at 129 % CPU). A stop, a leave or a test teardown
must never hang on it, so the wait is bounded; past it the reader task is cancelled and its
FFI event queue unsubscribed (what the task would have done on its way out), so no queue keeps
filling with events nobody reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from livekit import rtc

CLOSE_TIMEOUT_S = 5.0
log = logging.getLogger(__name__)


async def close_audio_stream(stream: rtc.AudioStream, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
    """Close `stream`; True when it ended by itself within `timeout_s`, False when it was cut."""
    closing = asyncio.ensure_future(stream.aclose())
    done, _ = await asyncio.wait({closing}, timeout=timeout_s)
    if done:
        with contextlib.suppress(Exception):
            closing.result()
        return True
    closing.cancel()  # cancels the await of the reader task, and so the task
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await closing
    _unsubscribe(stream)
    log.warning("an audio stream did not end within %.0f s of its close; cut", timeout_s)
    return False


def _unsubscribe(stream: rtc.AudioStream) -> None:
    # Private to the SDK (livekit/rtc/audio_stream.py `_run`'s last line); guarded, since a
    # later SDK may rename it: then only the queue's memory is at stake, not the close.
    queue = getattr(stream, "_ffi_queue", None)
    if queue is None:
        return
    with contextlib.suppress(Exception):
        from livekit.rtc._ffi_client import FfiClient

        FfiClient.instance.queue.unsubscribe(queue)


async def disconnect_room(room: rtc.Room, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
    """`room.disconnect()` bounded the same way; True when it completed in time."""
    try:
        async with asyncio.timeout(timeout_s):
            await room.disconnect()
        return True
    except TimeoutError:
        log.warning("leaving a LiveKit room did not complete within %.0f s", timeout_s)
        return False
