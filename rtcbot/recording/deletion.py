"""`!call record delete last`: a room's latest posted recording, gone at once.

What goes: the summary, its file messages and the bot's messages in the summary's thread (the
transcript, its progress and its .txt/.vtt files) are redacted; the audio files are removed
from the bot's disk; its transcript leaves the room's search; the row that remembered them is
deleted. People's own replies in the
thread are theirs: the bot redacts only what it sent. A recording whose transcript is still
being made is refused (the transcript would be posted after the deletion).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from mautrix.api import Method
from mautrix.api import Path as ApiPath
from mautrix.types import EventID, RoomID
from mautrix.util.async_db import Database

from ..context import BotContext
from ..media.recording_result import RecordingResult

MAX_THREAD_PAGES = 20  # 100 events a page: a transcript is a handful of messages


@dataclass(frozen=True)
class PostedRecording:
    room_id: str
    summary: str
    events: list[str]
    files: list[Path]
    ended_ms: int


class PostedRecordings:
    """The table `recording_posted`: filled by the `recording_posted` hook, and by the
    recovery of a recording a crash cut off."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def after_recording(
        self, room: RoomID, result: RecordingResult, summary: EventID
    ) -> None:
        await self.remember(
            room, summary, list(result.posted_events), [f.path for f in result.files]
        )

    async def remember(
        self, room_id: str, summary: str, events: list[str], files: list[Path]
    ) -> None:
        """A posted recording: its first message, the others, its files on disk. Also one a
        crash cut off, posted at the next start (recovery.py), so `delete last` finds it."""
        await self.db.execute(
            "INSERT INTO recording_posted (room_id, summary, events, files, ended_ms) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (room_id, summary) DO NOTHING",
            room_id,
            summary,
            json.dumps(events),
            json.dumps([str(f) for f in files]),
            int(time.time() * 1000),
        )

    async def latest(self, room_id: str) -> PostedRecording | None:
        row = await self.db.fetchrow(
            "SELECT room_id, summary, events, files, ended_ms FROM recording_posted "
            "WHERE room_id=$1 ORDER BY ended_ms DESC LIMIT 1",
            room_id,
        )
        if row is None:
            return None
        return PostedRecording(
            str(row["room_id"]),
            str(row["summary"]),
            [str(e) for e in json.loads(row["events"])],
            [Path(p) for p in json.loads(row["files"])],
            int(row["ended_ms"]),
        )

    async def forget(self, room_id: str, summary: str) -> None:
        await self.db.execute(
            "DELETE FROM recording_posted WHERE room_id=$1 AND summary=$2", room_id, summary
        )


@dataclass(frozen=True)
class Deleted:
    redacted: int
    not_redacted: int
    files_removed: int


class RecordingDeleter:
    def __init__(
        self,
        ctx: BotContext,
        store: PostedRecordings,
        busy: Callable[[Path], bool],
        forget: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        self.ctx, self.store, self.busy = ctx, store, busy
        self.forget = forget  # (room, summary): e.g. the transcript's lines in the search

    async def delete(self, rec: PostedRecording, reason: str) -> Deleted:
        room = RoomID(rec.room_id)
        own = await self._own_thread_events(room, EventID(rec.summary))
        redacted = failed = 0
        # The thread first, the summary last: a partial failure leaves the root to retry on.
        for event in [*own, *rec.events, rec.summary]:
            try:
                await self.ctx.client.redact(room, EventID(event), reason=reason)
                redacted += 1
            except Exception as e:
                failed += 1
                self.ctx.log.warning("could not redact %s in %s: %s", event, room, e)
        removed = 0
        for path in rec.files:
            if path.exists():
                path.unlink(missing_ok=True)
                removed += 1
        if self.forget is not None:
            await self.forget(rec.room_id, rec.summary)
        if not failed:
            await self.store.forget(rec.room_id, rec.summary)
        return Deleted(redacted, failed, removed)

    def transcribing(self, rec: PostedRecording) -> bool:
        return any(self.busy(path) for path in rec.files)

    async def _own_thread_events(self, room: RoomID, root: EventID) -> list[str]:
        me = self.ctx.client.mxid
        found: list[str] = []
        token: str | None = None
        for _ in range(MAX_THREAD_PAGES):
            query = {"limit": "100", **({"from": token} if token else {})}
            page = await self.ctx.client.api.request(
                Method.GET,
                ApiPath.v1.rooms[room].relations[root]["m.thread"],
                query_params=query,
            )
            for event in page.get("chunk", []):
                if event.get("sender") == me and event.get("event_id"):
                    found.append(str(event["event_id"]))
            token = page.get("next_batch")
            if not token:
                break
        return found
