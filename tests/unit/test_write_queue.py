"""The recorder's writer thread: chunks go in batches, in order with every other job; a
thread that falls behind costs counted chunks, never memory; a failing chunk is noted."""

from __future__ import annotations

import asyncio
import logging
import threading

from rtcbot.media.write_queue import BACKLOG_PER_STREAM, MAX_PENDING, WriteQueue


async def test_chunks_and_jobs_run_in_the_order_they_were_given() -> None:
    q = WriteQueue(logging.getLogger("rtcbot.test.writes"))
    q.open()
    seen: list[str] = []
    for i in range(5):
        assert q.add_chunk(seen.append, f"chunk {i}")
    job = q.submit(seen.append, "close")  # sends the waiting batch first
    assert job is not None
    await job
    assert q.add_chunk(seen.append, "after")
    q.shutdown(wait=True)  # the last batch too
    assert seen == [*(f"chunk {i}" for i in range(5)), "close", "after"]
    assert q.dropped_chunks == 0 and not q.errors


async def test_a_thread_that_falls_behind_costs_counted_chunks() -> None:
    q = WriteQueue(logging.getLogger("rtcbot.test.writes"))
    q.open()
    go = threading.Event()
    q.submit(go.wait, 30)  # the thread is stuck (a stalled disk)
    written: list[int] = []
    kept = [q.add_chunk(written.append, i) for i in range(MAX_PENDING + 7)]
    assert kept.count(False) == 7 and q.dropped_chunks == 7
    go.set()
    q.shutdown(wait=True)
    assert written == list(range(MAX_PENDING))


async def test_a_failing_chunk_is_noted_and_the_others_are_written() -> None:
    q = WriteQueue(logging.getLogger("rtcbot.test.writes"))
    q.open()
    written: list[int] = []

    def write(i: int) -> None:
        if i == 1:
            raise OSError("No space left on device")
        written.append(i)

    for i in range(3):
        q.add_chunk(write, i)
    q.shutdown(wait=True)
    for _ in range(1000):  # the batch's outcome reaches the loop (a few iterations; 10 s bound)
        if q.errors:
            break
        await asyncio.sleep(0.01)
    assert written == [0, 2]
    assert q.errors == ["OSError: No space left on device"]


async def test_the_backlog_bound_grows_with_the_streams_recorded() -> None:
    q = WriteQueue(logging.getLogger("rtcbot.test.writes"))
    q.open()
    go = threading.Event()
    q.submit(go.wait, 30)
    q.streams(100)  # a hundred speakers: 3 s of each may wait
    bound = BACKLOG_PER_STREAM * 100
    assert bound > MAX_PENDING
    kept = [q.add_chunk(lambda: None) for _ in range(bound + 3)]
    assert kept.count(False) == 3 and q.dropped_chunks == 3
    go.set()
    q.shutdown(wait=True)
    q.streams(2)
    assert q.max_pending == MAX_PENDING  # never below the floor
