"""The recording's one writer thread: Opus encoding and file writes off the event loop.

Chunks of audio may be dropped (and counted) when the thread falls behind, so a stalled disk
costs audio, not memory; every other job (closing a segment, flushing) is always queued. A
failing write is noted once per kind for the recording's result."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# Writes queued for the worker thread before new chunks are dropped (and counted).
MAX_PENDING = 600


class WriteQueue:
    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.dropped_chunks = 0
        self.errors: list[str] = []
        self._pending = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None

    def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rtcbot-recorder")

    def shutdown(self, wait: bool) -> None:
        """No new jobs; with `wait`, the queued ones are done first."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=wait)

    def submit(
        self, fn: Callable[..., Any], *args: Any, droppable: bool = False
    ) -> asyncio.Future[Any] | None:
        """Run `fn(*args)` on the thread; None if the queue is shut or a droppable job was
        dropped."""
        if self._executor is None or self._loop is None:
            return None
        if droppable and self._pending >= MAX_PENDING:
            self.dropped_chunks += 1
            return None
        self._pending += 1
        fut = self._loop.run_in_executor(self._executor, fn, *args)
        fut.add_done_callback(self._done)
        return fut

    def _done(self, fut: asyncio.Future[Any]) -> None:
        self._pending -= 1
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            self.note(f"{type(exc).__name__}: {exc}")

    def note(self, error: str) -> None:
        if error not in self.errors:
            self.errors.append(error)
            self.log.error("Writing the recording failed: %s", error)
