"""The plugin's database: the room settings several features read, the handled-command
table, small state. Each feature keeps its own tables' SQL beside itself (calls/store.py,
schedules/store.py, auth/store.py, recording/store.py); the schema is migrations.py."""

from __future__ import annotations

import time

from mautrix.util.async_db import Database


class DB:
    def __init__(self, db: Database) -> None:
        self.db = db  # the features' own stores use it too (schedules/store.py, …)

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
