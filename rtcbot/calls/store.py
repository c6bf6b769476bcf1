"""The SQL of the calls the bot means to be in (rejoined after a restart or a crash)."""

from __future__ import annotations

from dataclasses import dataclass

from mautrix.util.async_db import Database


@dataclass(frozen=True)
class OwnCall:
    room_id: str
    intent: str
    role: str


class OwnCallStore:
    def __init__(self, db: Database) -> None:
        self.db = db

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
