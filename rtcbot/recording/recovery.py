"""Nothing recorded is lost to a crash: a recording cut by the death of the process is posted
at the next start.

While a recording runs, the plugin DB holds a row for it (`DB.recordings`). A normal end
deletes it. A row found at start means the process died during that recording (kill -9, an
out-of-memory kill, a power cut): its files are on disk, written up to the last flush (every
2 s; an Ogg file cut there still plays up to that point). They are posted to the room with
what happened, once; then the row is deleted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from mautrix.types import RoomID

from ..context import BotContext
from .disk import kept_where
from .posts import upload_recording
from .store import RecordingInProgress, RecordingLog


@dataclass(frozen=True)
class LeftFile:
    path: Path
    label: str  # "Alice Example (ALICEDEV)", "Mix of everyone"
    size: int


def left_files(directory: Path, prefix: str) -> list[LeftFile]:
    """The non-empty files of a recording, named `<prefix>-<name>-<device>[-partN].ogg` or
    `<prefix>-mixed[-partN].ogg` (audio_files.py), the mix first."""
    found: list[LeftFile] = []
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob(f"{prefix}-*.ogg")):
        size = path.stat().st_size
        if size == 0:
            continue
        stem = path.stem[len(prefix) + 1 :]
        part = ""
        if "-part" in stem:
            stem, _, n = stem.rpartition("-part")
            part = f", part {n}"
        if stem == "mixed":
            label = f"Mix of everyone{part}"
        else:
            name, _, device = stem.rpartition("-")
            label = f"{(name or device).replace('_', ' ')} ({device}{part})"
        found.append(LeftFile(path, label, size))
    return sorted(found, key=lambda f: not f.label.startswith("Mix"))


class RecordingRecovery:
    def __init__(self, ctx: BotContext, store: RecordingLog | None = None) -> None:
        self.ctx = ctx
        self.log = ctx.logger("recovery")
        self.store = store or RecordingLog(ctx.db.db)
        # (room, first message, file messages, files): a recording posted here, for the
        # room's `record delete last` (deletion.PostedRecordings.remember).
        self.on_posted: Callable[[str, str, list[str], list[Path]], Awaitable[None]] | None = None

    async def started(self, room_id: str, directory: Path, prefix: str) -> None:
        rec = RecordingInProgress(room_id, prefix, str(directory), int(time.time() * 1000))
        await self.store.started(rec)

    async def listed(self) -> list[tuple[Path, str]]:
        """(folder, prefix) of every recording still listed: running, or cut off by a crash
        and not yet posted (retention never deletes these)."""
        return [(Path(r.directory), r.prefix) for r in await self.store.unfinished()]

    async def finished(self, room_id: str, prefix: str) -> None:
        await self.store.finished(room_id, prefix)

    async def recover(self) -> int:
        """Post every recording a crash cut off; returns how many there were."""
        unfinished = await self.store.unfinished()
        for rec in unfinished:
            try:
                await self._post(rec)
            except Exception:
                self.log.exception("posting the recording cut off in %s failed", rec.room_id)
            await self.store.finished(rec.room_id, rec.prefix)
        return len(unfinished)

    async def _post(self, rec: RecordingInProgress) -> None:
        directory = Path(rec.directory)
        files = await asyncio.to_thread(left_files, directory, rec.prefix)
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(rec.started_ms / 1000))
        limit = self.ctx.settings().recording.max_upload_mb * 1024 * 1024
        sizes = [f.size for f in files]
        head = (
            f"⚠️ I was restarted during the recording that started {started}: it ended there, "
            "without its last seconds."
        )
        room = RoomID(rec.room_id)
        too_large = sum(sizes) > limit
        if not files:
            await self.ctx.notices.send(room, f"{head} Nothing had been written yet.")
        elif too_large:
            kept = await self.ctx.notices.send(
                room,
                f"{head} Its {len(files)} files ({sum(sizes) / 1e6:.1f} MB) are larger than the "
                f"upload limit and stay on my disk, in `{kept_where(files[0].path)}` "
                "of its recordings folder.",
            )
            await self._posted(rec.room_id, kept, [], files)
        else:
            first = await self.ctx.notices.send(room, f"{head} What was recorded until then:")
            posted: list[str] = []
            try:
                for f in files:
                    posted.append(await upload_recording(self.ctx, room, f.path, f.label))
            finally:  # what did get posted is deletable even when an upload failed
                await self._posted(rec.room_id, first, posted, files)
            if self.ctx.settings().recording.retention_days == 0:  # posted: not kept
                for f in files:
                    f.path.unlink(missing_ok=True)
        self.log.warning("posted the recording cut off by a restart in %s", rec.room_id)

    async def _posted(
        self, room_id: str, first: str, events: list[str], files: list[LeftFile]
    ) -> None:
        # The room's latest recording now: `record delete last` must find this one.
        if self.on_posted is not None:
            await self.on_posted(room_id, first, events, [f.path for f in files])
