"""Background tasks of one plugin instance, tracked so that `stop()` can cancel and await them.

`mautrix.util.background_task.create` keeps a task alive but forgets it; a plugin that is stopped
(or reloaded from the admin panel) must not leave a recording or a rejoin running behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, ParamSpec

from .matrix.encryption_guard import PlaintextRefused

P = ParamSpec("P")


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None, grace_s: float = 0.0) -> None:
    """End `tasks`: give them `grace_s` to finish on their own, cancel the rest, await all.

    Their own failure or cancellation is not ours and is swallowed (the task logged it, or was
    a loop whose end is the point); the caller being cancelled while it waits is not swallowed,
    unlike `with suppress(CancelledError): await task`, which hides both."""
    pending = [t for t in tasks if t is not None and not t.done()]
    if pending and grace_s > 0:
        _, still = await asyncio.wait(pending, timeout=grace_s)
        pending = list(still)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    for ended in tasks:  # mark failures as seen: no "exception was never retrieved" at exit
        if ended is not None and ended.done() and not ended.cancelled():
            ended.exception()


class Tasks:
    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any] | None:
        """Run `coro` in the background; its failure is logged, never lost silently.
        After close() nothing new starts (the coroutine is closed unrun)."""
        if self._closed:
            coro.close()
            return None
        task = asyncio.create_task(self._guard(coro, name), name=f"rtcbot:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guard(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except PlaintextRefused as e:  # the guard logged why, once per room
            self.log.debug("background task %s withheld its message: %s", name, e)
        except Exception:
            self.log.exception("background task %s failed", name)

    def running(self) -> list[asyncio.Task[Any]]:
        return [t for t in self._tasks if not t.done()]

    async def close(self, grace_s: float = 0.0) -> None:
        """Refuse new tasks, give running ones `grace_s` to finish, cancel the rest, await all."""
        self._closed = True
        await cancel_and_wait(*self.running(), grace_s=grace_s)


class Periodic:
    """Call `tick` every `interval_s()` seconds (read each time, so a config change applies live)
    from `start()` until `stop()`. A failing tick is logged and the next one still runs."""

    def __init__(
        self,
        tick: Callable[[], Awaitable[None] | None],
        interval_s: Callable[[], float],
        log: logging.Logger,
        what: str,
    ) -> None:
        self.tick = tick
        self.interval_s = interval_s
        self.log = log
        self.what = what
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.create_task(self._loop(), name=f"rtcbot:{self.what}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s())
            try:
                result = self.tick()
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("%s failed", self.what)


class Hooks(Generic[P]):
    """Whoever wants to hear of one kind of event. Subscribers run in the order they were added;
    one that fails is logged and the others still run."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self.log = log
        self.what = what
        self._subscribers: list[Callable[P, Any]] = []

    def add(self, *subscribers: Callable[P, Any]) -> None:
        self._subscribers.extend(subscribers)

    def remove(self, subscriber: Callable[P, Any]) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(subscriber)

    def __len__(self) -> int:
        return len(self._subscribers)

    def __contains__(self, subscriber: object) -> bool:
        return subscriber in self._subscribers

    def notify(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Tell plain (non-async) subscribers, before the caller's next await."""
        for subscriber in list(self._subscribers):
            try:
                result = subscriber(*args, **kwargs)
                if inspect.iscoroutine(result):
                    result.close()
                    raise TypeError("an async subscriber given to notify(); use emit()")
            except Exception:
                self.log.exception("%s: subscriber %s failed", self.what, subscriber)

    async def emit(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Tell every subscriber, awaiting each one that is async, one after another."""
        for subscriber in list(self._subscribers):
            try:
                result = subscriber(*args, **kwargs)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("%s: subscriber %s failed", self.what, subscriber)


# Code whose coroutines belong to the plugin: its own modules and the LiveKit SDK, which only
# the plugin uses inside maubot's process.
PLUGIN_CODE = ("/rtcbot/", "/livekit/")


def _await_chain_files(coro: Any) -> list[str]:
    files = []
    while coro is not None:
        code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
        if code is not None:
            files.append(code.co_filename)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return files


def plugin_tasks() -> list[asyncio.Task[Any]]:
    """Running tasks of the event loop that run (or wait in) the plugin's code: what `stop()`
    must have ended. The current task (the one calling this) is left out."""
    current = asyncio.current_task()
    found = []
    for task in asyncio.all_tasks():
        if task is current or task.done():
            continue
        files = _await_chain_files(task.get_coro())
        if any(marker in f for f in files for marker in PLUGIN_CODE):
            found.append(task)
    return found


def owner_logger(task: asyncio.Task[Any]) -> logging.Logger | None:
    """The instance logger of the manager whose method the task runs (`self.ctx.log`), if any.

    Several instances of the plugin share one maubot process and one code base: this tells
    another instance's loops apart from ours."""
    frame = getattr(task.get_coro(), "cr_frame", None)
    owner = frame.f_locals.get("self") if frame is not None else None
    # A manager's `ctx.log`, or the child logger of a helper that has no context (Retention).
    for log in (getattr(getattr(owner, "ctx", None), "log", None), getattr(owner, "log", None)):
        if isinstance(log, logging.Logger):
            return log
    return None


def owned_by(task: asyncio.Task[Any], instance_log: logging.Logger) -> bool:
    """The task is this instance's: its owner logs under the instance's logger, or under no
    instance's at all (counted, to be safe); a task of another instance is not."""

    def under(log: logging.Logger, parent: str) -> bool:
        return log.name == parent or log.name.startswith(f"{parent}.")

    log = owner_logger(task)
    if log is None or under(log, instance_log.name):
        return True
    siblings = instance_log.name.rpartition(".")[0]  # maubot.instance
    return not (siblings and under(log, siblings))
