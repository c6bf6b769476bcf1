"""The SQL of scheduled calls (tables from upgrade_v2 in migrations.py)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mautrix.util.async_db import Database

from .occurrences import Schedule, ScheduleRule, from_ms, to_ms


class ScheduleStore:
    """The SQL of scheduled calls (tables from upgrade_v2 in migrations.py).

    `claim` is what makes every (schedule, occurrence, kind) come out at most once, across
    restarts and instances: the runner claims an action before it posts it."""

    COLUMNS = "id, room_id, creator, rule, title, remind_s, ring, record, duration_s, created_ts"

    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def _schedule(row: Mapping[str, Any]) -> Schedule:
        return Schedule(
            id=int(row["id"]),
            rule=ScheduleRule.from_json(row["rule"]),
            title=str(row["title"]),
            created=from_ms(int(row["created_ts"])),
            remind_s=int(row["remind_s"]),
            ring=bool(row["ring"]),
            record=bool(row["record"]),
            duration_s=int(row["duration_s"]),
            room_id=str(row["room_id"]),
            creator=str(row["creator"]),
        )

    async def add(
        self,
        room_id: str,
        creator: str,
        rule: ScheduleRule,
        title: str,
        remind_s: int,
        ring: bool,
        record: bool,
        duration_s: int,
        created: datetime,
    ) -> Schedule:
        schedule_id = await self.db.fetchval(
            "INSERT INTO schedule (room_id, creator, rule, title, remind_s, ring, record, "
            "duration_s, created_ts, active) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, true) "
            "RETURNING id",
            room_id,
            creator,
            rule.to_json(),
            title,
            remind_s,
            ring,
            record,
            duration_s,
            to_ms(created),
        )
        row = await self.db.fetchrow(
            f"SELECT {self.COLUMNS} FROM schedule WHERE id=$1", int(schedule_id)
        )
        assert row is not None
        return self._schedule(row)

    async def active(self) -> list[Schedule]:
        rows = await self.db.fetch(f"SELECT {self.COLUMNS} FROM schedule WHERE active ORDER BY id")
        return [self._schedule(r) for r in rows]

    async def for_room(self, room_id: str) -> list[Schedule]:
        rows = await self.db.fetch(
            f"SELECT {self.COLUMNS} FROM schedule WHERE active AND room_id=$1 ORDER BY id",
            room_id,
        )
        return [self._schedule(r) for r in rows]

    async def remove(self, room_id: str, schedule_id: int) -> Schedule | None:
        row = await self.db.fetchrow(
            f"SELECT {self.COLUMNS} FROM schedule WHERE id=$1 AND room_id=$2 AND active",
            schedule_id,
            room_id,
        )
        if row is None:
            return None
        await self.db.execute("DELETE FROM schedule_fired WHERE schedule_id=$1", schedule_id)
        await self.db.execute("DELETE FROM schedule WHERE id=$1", schedule_id)
        return self._schedule(row)

    async def deactivate(self, schedule_id: int) -> None:
        await self.db.execute("UPDATE schedule SET active=false WHERE id=$1", schedule_id)

    async def last_fired(self) -> dict[int, dict[str, datetime]]:
        """Per schedule and action kind, the latest occurrence handled."""
        rows = await self.db.fetch(
            "SELECT schedule_id, kind, MAX(occurrence_ts) AS ts FROM schedule_fired "
            "GROUP BY schedule_id, kind"
        )
        out: dict[int, dict[str, datetime]] = {}
        for r in rows:
            out.setdefault(int(r["schedule_id"]), {})[str(r["kind"])] = from_ms(int(r["ts"]))
        return out

    async def claim(self, schedule_id: int, occurrence: datetime, kind: str, outcome: str) -> bool:
        """True for the first caller only: posting this action is then theirs."""
        occ_ms = to_ms(occurrence)
        row = await self.db.fetchrow(
            "INSERT INTO schedule_fired (schedule_id, occurrence_ts, kind, outcome, fired_ts) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (schedule_id, occurrence_ts, kind) "
            "DO NOTHING RETURNING schedule_id",
            schedule_id,
            occ_ms,
            kind,
            outcome,
            int(time.time() * 1000),
        )
        if row is None:
            return False
        # Only the latest row per kind matters; keep a week of history for the curious.
        await self.db.execute(
            "DELETE FROM schedule_fired WHERE schedule_id=$1 AND kind=$2 AND occurrence_ts<$3",
            schedule_id,
            kind,
            occ_ms - 7 * 86_400_000,
        )
        return True

    async def get_timezone(self, room_id: str) -> str | None:
        val = await self.db.fetchval("SELECT tz FROM room_timezone WHERE room_id=$1", room_id)
        return str(val) if val else None

    async def set_timezone(self, room_id: str, tz: str) -> None:
        await self.db.execute(
            "INSERT INTO room_timezone (room_id, tz) VALUES ($1, $2) "
            "ON CONFLICT (room_id) DO UPDATE SET tz=excluded.tz",
            room_id,
            tz,
        )
