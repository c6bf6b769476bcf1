"""The async toolkit: cancel_and_wait, Periodic and Hooks (no wall-clock waits: events decide)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from rtcbot.tasks import Hooks, Periodic, Tasks, cancel_and_wait

LOG = logging.getLogger("test.tasks")


async def forever(started: asyncio.Event | None = None) -> None:
    if started is not None:
        started.set()
    await asyncio.Event().wait()


async def test_cancel_and_wait_ends_running_tasks_and_ignores_none_and_done() -> None:
    started = asyncio.Event()
    loop_task = asyncio.create_task(forever(started))
    done = asyncio.create_task(asyncio.sleep(0))
    await done
    await started.wait()
    await cancel_and_wait(loop_task, None, done)
    assert loop_task.cancelled()


async def test_cancel_and_wait_swallows_the_tasks_failure_and_marks_it_seen() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    await asyncio.wait({task})
    await cancel_and_wait(task)  # no raise
    assert isinstance(task.exception(), RuntimeError)


async def test_cancel_and_wait_lets_a_finishing_task_finish_within_the_grace() -> None:
    release = asyncio.Event()

    async def finishing() -> str:
        await release.wait()
        return "finished"

    task = asyncio.create_task(finishing())
    asyncio.get_running_loop().call_soon(release.set)
    await cancel_and_wait(task, grace_s=30)
    assert task.result() == "finished"


async def test_the_caller_being_cancelled_is_not_swallowed() -> None:
    """`with suppress(CancelledError): await task` hides the caller's own cancellation."""
    stubborn_started = asyncio.Event()

    async def stubborn() -> None:
        stubborn_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.Event().wait()  # refuses to end: the caller waits on it

    inner = asyncio.create_task(stubborn())
    await stubborn_started.wait()
    caller = asyncio.create_task(cancel_and_wait(inner))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    inner.cancel()
    await asyncio.wait({inner})


async def test_tasks_close_cancels_what_runs_and_refuses_new_work() -> None:
    tasks = Tasks(LOG)
    started = asyncio.Event()
    task = tasks.spawn(forever(started), "loop")
    assert task is not None
    await started.wait()
    await tasks.close()
    assert task.cancelled()
    assert tasks.spawn(forever(), "late") is None


async def test_periodic_runs_until_stopped_and_survives_a_failing_tick() -> None:
    ticks: list[int] = []
    third = asyncio.Event()

    def tick() -> None:
        ticks.append(len(ticks))
        if len(ticks) == 1:
            raise RuntimeError("first tick fails")
        if len(ticks) == 3:
            third.set()

    periodic = Periodic(tick, lambda: 0, LOG, "test ticker")
    periodic.start()
    await third.wait()
    await periodic.stop()
    assert not periodic.running
    count = len(ticks)
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(ticks) == count  # nothing after stop


async def test_periodic_awaits_an_async_tick_and_reads_its_interval_each_time() -> None:
    intervals: list[float] = []
    done = asyncio.Event()

    def interval() -> float:
        intervals.append(0.0)
        return 0.0

    async def tick() -> None:
        await asyncio.sleep(0)
        if len(intervals) >= 2:
            done.set()

    periodic = Periodic(tick, interval, LOG, "async ticker")
    periodic.start()
    periodic.start()  # a second start does not start a second loop
    await done.wait()
    await periodic.stop()
    assert len(intervals) >= 2


async def test_hooks_emit_awaits_in_order_and_a_failure_does_not_stop_the_rest() -> None:
    seen: list[str] = []
    hooks: Hooks[[str]] = Hooks(LOG, "room gone")

    async def first(room: str) -> None:
        await asyncio.sleep(0)
        seen.append(f"first {room}")

    def broken(room: str) -> None:
        raise RuntimeError(room)

    async def last(room: str) -> None:
        seen.append(f"last {room}")

    hooks.add(first, broken)
    hooks.add(last)
    await hooks.emit("!r")
    assert seen == ["first !r", "last !r"]
    hooks.remove(first)
    hooks.remove(first)  # removing twice is harmless
    assert first not in hooks and len(hooks) == 2


def test_hooks_notify_calls_plain_subscribers_and_refuses_async_ones() -> None:
    seen: list[int] = []
    hooks: Hooks[[int]] = Hooks(LOG, "events")

    async def wrong(n: int) -> None:
        seen.append(-n)

    hooks.add(seen.append, wrong, lambda n: seen.append(n * 10))
    hooks.notify(2)
    assert seen == [2, 20]  # the async one never ran (and its coroutine was closed)
