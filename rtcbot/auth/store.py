"""The SQL of delegated delayed leaves: one row per job, kept across restarts."""

from __future__ import annotations

from dataclasses import dataclass

from mautrix.util.async_db import Database

from ..rtc.leave_request import LeaveRequest


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
