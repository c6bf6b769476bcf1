"""The SQL of recordings: those a crash may cut off (for the recovery) and who opted out."""

from __future__ import annotations

import time
from dataclasses import dataclass

from mautrix.util.async_db import Database


@dataclass(frozen=True)
class RecordingInProgress:
    room_id: str
    prefix: str
    directory: str
    started_ms: int


class RecordingLog:
    """Recordings that have started and not finished (crash recovery, recording/recovery.py)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def started(self, rec: RecordingInProgress) -> None:
        await self.db.execute(
            "INSERT INTO recording_in_progress (room_id, prefix, directory, started_ms) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (room_id, prefix) DO NOTHING",
            rec.room_id,
            rec.prefix,
            rec.directory,
            rec.started_ms,
        )

    async def finished(self, room_id: str, prefix: str) -> None:
        await self.db.execute(
            "DELETE FROM recording_in_progress WHERE room_id=$1 AND prefix=$2", room_id, prefix
        )

    async def unfinished(self) -> list[RecordingInProgress]:
        rows = await self.db.fetch(
            "SELECT room_id, prefix, directory, started_ms FROM recording_in_progress "
            "ORDER BY started_ms"
        )
        return [
            RecordingInProgress(r["room_id"], r["prefix"], r["directory"], int(r["started_ms"]))
            for r in rows
        ]


class OptOutStore:
    """Who is left out of a room's recordings (recording/optout.py): user → anonymous."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def all(self) -> dict[str, dict[str, bool]]:
        rows = await self.db.fetch("SELECT room_id, user_id, anonymous FROM recording_optout")
        out: dict[str, dict[str, bool]] = {}
        for r in rows:
            out.setdefault(str(r["room_id"]), {})[str(r["user_id"])] = bool(r["anonymous"])
        return out

    async def opt_out(self, room_id: str, user_id: str, anonymous: bool) -> None:
        await self.db.execute(
            "INSERT INTO recording_optout (room_id, user_id, anonymous, since_ms) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (room_id, user_id) "
            "DO UPDATE SET anonymous=excluded.anonymous",
            room_id,
            user_id,
            anonymous,
            int(time.time() * 1000),
        )

    async def opt_in(self, room_id: str, user_id: str) -> bool:
        """True if the user had opted out."""
        had = await self.db.fetchval(
            "SELECT 1 FROM recording_optout WHERE room_id=$1 AND user_id=$2", room_id, user_id
        )
        await self.db.execute(
            "DELETE FROM recording_optout WHERE room_id=$1 AND user_id=$2", room_id, user_id
        )
        return had is not None
