"""How long recordings stay on disk (`recording.retention_days`), and what is never deleted.

Never deleted, whatever their age: the files of a recording that is running, listed for crash
recovery (`DB.recordings`), or still being posted or transcribed (held from the end of the
recording until its transcript is done: `hold` / `release`). The first pass runs only after
the crash recovery has posted what it found, so the two never race at start.

With `retention_days: 0` the hourly pass deletes nothing: a recording's files are deleted
right after they were posted and transcribed (`drop_posted_files`, and the recovery after its
own post); what was never posted (larger than the upload limit, or the bot was removed from
the room) stays until the operator removes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from ..recording.settings import RecordingSettings

EVERY_S = 3600
# A recording's files are `<prefix>-<name>.ogg` in its room's folder: (folder, prefix).
Recording = tuple[Path, str]


def apply_retention(
    root: Path, days: int, busy: set[Recording], held: frozenset[Path] = frozenset()
) -> list[Path]:
    """Delete recordings older than `days` (0: nothing) but the busy recordings and the held
    files; returns what was deleted (blocking: run in a thread)."""
    if days <= 0 or not root.is_dir():
        return []
    cutoff = time.time() - days * 86400
    deleted = []
    for path in root.glob("*/*"):
        if _busy(path, busy) or path.resolve() in held or path.stat().st_mtime >= cutoff:
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        deleted.append(path)
    return deleted


def _busy(path: Path, busy: set[Recording]) -> bool:
    folder = path.parent.resolve()
    return any(folder == d.resolve() and path.name.startswith(f"{prefix}-") for d, prefix in busy)


class Retention:
    def __init__(
        self,
        settings: Callable[[], RecordingSettings],
        running: Callable[[], Iterable[Recording]],
        listed: Callable[[], Awaitable[Iterable[Recording]]],
        log: logging.Logger,
    ) -> None:
        self.settings = settings
        self.running = running  # recordings being made now
        self.listed = listed  # recordings the crash recovery knows of
        self.log = log
        self._held: dict[Path, int] = {}  # files being posted or transcribed (a count)
        self._task: asyncio.Task[None] | None = None

    def hold(self, files: Iterable[Path]) -> None:
        for path in files:
            key = path.resolve()
            self._held[key] = self._held.get(key, 0) + 1

    def release(self, files: Iterable[Path]) -> None:
        for path in files:
            key = path.resolve()
            left = self._held.get(key, 0) - 1
            if left > 0:
                self._held[key] = left
            else:
                self._held.pop(key, None)

    def held(self, path: Path) -> bool:
        """Is the file being posted or transcribed now?"""
        return path.resolve() in self._held

    def start(self, first: Awaitable[object]) -> None:
        """Pass every hour, the first one once `first` (the crash recovery) is done."""
        self._task = asyncio.ensure_future(self._loop(first))

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self, first: Awaitable[object]) -> None:
        try:
            await first
        except Exception:
            self.log.exception("the crash recovery failed; retention goes on")
        while True:
            await self.apply_once()
            await asyncio.sleep(EVERY_S)

    async def apply_once(self) -> list[Path]:
        settings = self.settings()
        try:
            busy = {*self.running(), *await self.listed()}
            held = frozenset(self._held)
            # glob, stat and rmtree of a large directory: off the event loop.
            deleted = await asyncio.to_thread(
                apply_retention, Path(settings.directory), settings.retention_days, busy, held
            )
        except Exception:
            self.log.exception("applying the recording retention failed")
            return []
        if deleted:
            self.log.info("retention: deleted %d old recording files", len(deleted))
        return deleted
