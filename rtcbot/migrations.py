"""Plugin database schema (mautrix async_db; works on SQLite and PostgreSQL)."""

from __future__ import annotations

from mautrix.util.async_db import Connection, UpgradeTable

upgrade_table = UpgradeTable()


@upgrade_table.register(description="Room settings")
async def upgrade_v1(conn: Connection) -> None:
    await conn.execute(
        """CREATE TABLE room_settings (
            room_id      TEXT PRIMARY KEY,
            notify_level TEXT,
            auto_role    TEXT
        )"""
    )
