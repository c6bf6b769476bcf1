"""All SQL of the plugin in one place."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mautrix.util.async_db import Database

from .rtc.delegated_leave import LeaveRequest
from .schedules.occurrences import Schedule, ScheduleRule, from_ms, to_ms


@dataclass(frozen=True)
class OwnCall:
    room_id: str
    intent: str
    role: str


class DB:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.schedules = ScheduleStore(db)
        self.delegated_leaves = DelegatedLeaveStore(db)
        self.recordings = RecordingLog(db)
        self.optouts = OptOutStore(db)

    # -- room settings -----------------------------------------------------------------------
    async def get_notify_level(self, room_id: str) -> str | None:
        val = await self.db.fetchval(
            "SELECT notify_level FROM room_settings WHERE room_id=$1", room_id
        )
        return str(val) if val else None

    async def set_notify_level(self, room_id: str, level: str) -> None:
        await self.db.execute(
            "INSERT INTO room_settings (room_id, notify_level) VALUES ($1, $2) "
            "ON CONFLICT (room_id) DO UPDATE SET notify_level=excluded.notify_level",
            room_id,
            level,
        )

    async def get_auto_role(self, room_id: str) -> str | None:
        val = await self.db.fetchval(
            "SELECT auto_role FROM room_settings WHERE room_id=$1", room_id
        )
        return str(val) if val else None

    async def set_auto_role(self, room_id: str, role: str | None) -> None:
        await self.db.execute(
            "INSERT INTO room_settings (room_id, auto_role) VALUES ($1, $2) "
            "ON CONFLICT (room_id) DO UPDATE SET auto_role=excluded.auto_role",
            room_id,
            role,
        )

    async def get_feature(self, room_id: str, feature: str) -> bool | None:
        """A room's own choice for `transcript` / `captions` (None: the config decides)."""
        val = await self.db.fetchval(
            "SELECT enabled FROM room_feature WHERE room_id=$1 AND feature=$2", room_id, feature
        )
        return None if val is None else bool(val)

    async def set_feature(self, room_id: str, feature: str, enabled: bool) -> None:
        await self.db.execute(
            "INSERT INTO room_feature (room_id, feature, enabled) VALUES ($1, $2, $3) "
            "ON CONFLICT (room_id, feature) DO UPDATE SET enabled=excluded.enabled",
            room_id,
            feature,
            enabled,
        )

    # -- exactly-once commands ---------------------------------------------------------------
    async def claim_command(self, event_id: str, room_id: str) -> bool:
        """True for the first caller only: the command is then theirs to run."""
        row = await self.db.fetchrow(
            "INSERT INTO handled_command (event_id, room_id, handled_ts) VALUES ($1, $2, $3) "
            "ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
            event_id,
            room_id,
            int(time.time() * 1000),
        )
        return row is not None

    async def prune_commands(self, older_than_ms: int) -> None:
        await self.db.execute("DELETE FROM handled_command WHERE handled_ts < $1", older_than_ms)

    # -- small key/value state ---------------------------------------------------------------
    async def get_state(self, key: str) -> str | None:
        val = await self.db.fetchval("SELECT value FROM bot_state WHERE key=$1", key)
        return str(val) if val is not None else None

    async def set_state(self, key: str, value: str) -> None:
        await self.db.execute(
            "INSERT INTO bot_state (key, value) VALUES ($1, $2) "
            "ON CONFLICT (key) DO UPDATE SET value=excluded.value",
            key,
            value,
        )

    # -- calls the bot means to be in --------------------------------------------------------
    async def own_calls(self) -> list[OwnCall]:
        rows = await self.db.fetch("SELECT room_id, intent, role FROM own_call")
        return [OwnCall(r["room_id"], r["intent"], r["role"]) for r in rows]

    async def add_own_call(self, room_id: str, intent: str, role: str = "member") -> None:
        await self.db.execute(
            "INSERT INTO own_call (room_id, intent, role) VALUES ($1, $2, $3) "
            "ON CONFLICT (room_id) DO UPDATE SET intent=excluded.intent, role=excluded.role",
            room_id,
            intent,
            role,
        )

    async def remove_own_call(self, room_id: str) -> None:
        await self.db.execute("DELETE FROM own_call WHERE room_id=$1", room_id)


# -- scheduled calls -------------------------------------------------------------------------
class ScheduleStore:
    """The SQL of scheduled calls (tables from upgrade_v2 in migrations.py), as `DB.schedules`.

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


# -- delegated delayed leaves ----------------------------------------------------------------
@dataclass(frozen=True)
class StoredLeave:
    request: LeaveRequest
    phase: str
    created_ms: int
    restarted_ms: int
    sid: str


class DelegatedLeaveStore:
    """The SQL of delegated delayed leaves (table from upgrade_v3), as `DB.delegated_leaves`.

    Updates and deletes name the delay id too: a job that a newer request for the same
    participant replaced can never overwrite or delete the newer row."""

    COLUMNS = (
        "livekit_room, identity, delay_id, delay_timeout_ms, server_name, user_id, room_id, "
        "phase, created_ms, restarted_ms, sid"
    )

    def __init__(self, db: Database) -> None:
        self.db = db

    async def save(self, leave: StoredLeave) -> None:
        """Insert, or replace the row of the same (LiveKit room, identity)."""
        r = leave.request
        await self.db.execute(
            f"INSERT INTO delegated_leave ({self.COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
            "ON CONFLICT (livekit_room, identity) DO UPDATE SET delay_id=excluded.delay_id, "
            "delay_timeout_ms=excluded.delay_timeout_ms, server_name=excluded.server_name, "
            "user_id=excluded.user_id, room_id=excluded.room_id, phase=excluded.phase, "
            "created_ms=excluded.created_ms, restarted_ms=excluded.restarted_ms, "
            "sid=excluded.sid",
            r.livekit_room,
            r.identity,
            r.delay_id,
            r.delay_timeout_ms,
            r.server_name,
            r.user_id,
            r.room_id,
            leave.phase,
            leave.created_ms,
            leave.restarted_ms,
            leave.sid,
        )

    async def update(self, request: LeaveRequest, phase: str, restarted_ms: int, sid: str) -> None:
        await self.db.execute(
            "UPDATE delegated_leave SET phase=$4, restarted_ms=$5, sid=$6 "
            "WHERE livekit_room=$1 AND identity=$2 AND delay_id=$3",
            request.livekit_room,
            request.identity,
            request.delay_id,
            phase,
            restarted_ms,
            sid,
        )

    async def delete(self, request: LeaveRequest) -> None:
        await self.db.execute(
            "DELETE FROM delegated_leave WHERE livekit_room=$1 AND identity=$2 AND delay_id=$3",
            request.livekit_room,
            request.identity,
            request.delay_id,
        )

    async def all(self) -> list[StoredLeave]:
        rows = await self.db.fetch(f"SELECT {self.COLUMNS} FROM delegated_leave")
        return [
            StoredLeave(
                request=LeaveRequest(
                    livekit_room=str(row["livekit_room"]),
                    identity=str(row["identity"]),
                    delay_id=str(row["delay_id"]),
                    delay_timeout_ms=int(row["delay_timeout_ms"]),
                    server_name=str(row["server_name"]),
                    user_id=str(row["user_id"]),
                    room_id=str(row["room_id"]),
                ),
                phase=str(row["phase"]),
                created_ms=int(row["created_ms"]),
                restarted_ms=int(row["restarted_ms"]),
                sid=str(row["sid"] or ""),
            )
            for row in rows
        ]


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

    async def of_room(self, room_id: str) -> dict[str, bool]:
        rows = await self.db.fetch(
            "SELECT user_id, anonymous FROM recording_optout WHERE room_id=$1", room_id
        )
        return {str(r["user_id"]): bool(r["anonymous"]) for r in rows}

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
