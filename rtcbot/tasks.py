"""Background tasks of one plugin instance, tracked so that `stop()` can cancel and await them.

`mautrix.util.background_task.create` keeps a task alive but forgets it; a plugin that is stopped
(or reloaded from the admin panel) must not leave a recording or a rejoin running behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from .matrix.encryption_guard import PlaintextRefused


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

    def reopen(self) -> None:
        self._closed = False

    async def close(self, grace_s: float = 0.0) -> None:
        """Refuse new tasks, give running ones `grace_s` to finish, cancel the rest, await all."""
        self._closed = True
        pending = self.running()
        if pending and grace_s > 0:
            _, still = await asyncio.wait(pending, timeout=grace_s)
            pending = list(still)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


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
