"""The recording's one writer thread: Opus encoding and file writes off the event loop.

Chunks of audio may be dropped (and counted) when the thread falls behind, so a stalled disk
costs audio, not memory; every other job (closing a segment, flushing) is always queued. A
failing write is noted once per kind for the recording's result.

Chunks go to the thread in batches, one job per `BATCH_S`: a job per chunk was a future, a
thread hand-off and a wake-up of the event loop for each 100 ms frame of each speaker (a
thousand a second at 100 speakers: bench.recorder_scale). Any other job first sends the
batch before it, so the thread sees everything in the order it was submitted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# Chunks queued for the worker thread before new chunks are dropped (and counted): at least
# this many, and `BACKLOG_PER_STREAM` per stream recorded (3 s of each speaker's 100 ms
# frames, ≈ 290 KB at 48 kHz): a hundred speakers filled 600 in 0.6 s of a busy core.
MAX_PENDING = 600
BACKLOG_PER_STREAM = 30
# How long a chunk may wait for its batch (what a crash can lose on top of the Ogg page).
BATCH_S = 0.05


class WriteQueue:
    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.dropped_chunks = 0
        self.errors: list[str] = []
        self._pending = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._batch: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._batch_timer: asyncio.TimerHandle | None = None
        self.max_pending = MAX_PENDING

    def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rtcbot-recorder")

    def shutdown(self, wait: bool) -> None:
        """No new jobs; with `wait`, the queued ones are done first."""
        self._send_batch()
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=wait)

    def streams(self, n: int) -> None:
        """How many streams feed the queue now (its bound grows with them)."""
        self.max_pending = max(MAX_PENDING, BACKLOG_PER_STREAM * n)

    def add_chunk(self, fn: Callable[..., Any], *args: Any) -> bool:
        """`fn(*args)` in the next batch; False if the queue is shut or the chunk was dropped
        (the thread is `max_pending` chunks behind)."""
        if self._executor is None or self._loop is None:
            return False
        if self._pending >= self.max_pending:
            self.dropped_chunks += 1
            return False
        self._pending += 1
        self._batch.append((fn, args))
        if self._batch_timer is None:
            self._batch_timer = self._loop.call_later(BATCH_S, self._send_batch)
        return True

    def submit(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any] | None:
        """Run `fn(*args)` on the thread after every chunk added before; None if the queue
        is shut."""
        self._send_batch()
        if self._executor is None or self._loop is None:
            return None
        fut = self._loop.run_in_executor(self._executor, fn, *args)
        fut.add_done_callback(self._noted)
        return fut

    def _send_batch(self) -> None:
        if self._batch_timer is not None:
            self._batch_timer.cancel()
            self._batch_timer = None
        batch, self._batch = self._batch, []
        if not batch or self._executor is None or self._loop is None:
            self._pending -= len(batch)
            return
        fut = self._loop.run_in_executor(self._executor, self._run_batch, batch)
        fut.add_done_callback(lambda f: self._batch_done(f, len(batch)))

    def _run_batch(self, batch: list[tuple[Callable[..., Any], tuple[Any, ...]]]) -> list[str]:
        errors = []
        for fn, args in batch:
            try:
                fn(*args)
            except Exception as e:  # one chunk's failure is noted; the others are written
                errors.append(f"{type(e).__name__}: {e}")
        return errors

    def _batch_done(self, fut: asyncio.Future[list[str]], n: int) -> None:
        self._pending -= n
        if fut.cancelled():
            return
        exc = fut.exception()
        for error in [f"{type(exc).__name__}: {exc}"] if exc is not None else fut.result():
            self.note(error)

    def _noted(self, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            self.note(f"{type(exc).__name__}: {exc}")

    def note(self, error: str) -> None:
        if error not in self.errors:
            self.errors.append(error)
            self.log.error("Writing the recording failed: %s", error)
