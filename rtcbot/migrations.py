"""Plugin database schema (mautrix async_db; works on SQLite and PostgreSQL)."""

from __future__ import annotations

from mautrix.util.async_db import Connection, UpgradeTable

upgrade_table = UpgradeTable()


@upgrade_table.register(description="Room settings, handled commands, the bot's own calls")
async def upgrade_v1(conn: Connection) -> None:
    await conn.execute(
        """CREATE TABLE room_settings (
            room_id      TEXT PRIMARY KEY,
            notify_level TEXT,
            auto_role    TEXT
        )"""
    )
    # Every command the bot ran, so the catch-up after a restart runs each one exactly once.
    await conn.execute(
        """CREATE TABLE handled_command (
            event_id   TEXT PRIMARY KEY,
            room_id    TEXT NOT NULL,
            handled_ts BIGINT NOT NULL
        )"""
    )
    await conn.execute("CREATE TABLE bot_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    # Calls the bot means to be in (survives restarts: the bot rejoins after a crash).
    await conn.execute(
        """CREATE TABLE own_call (
            room_id TEXT PRIMARY KEY,
            intent  TEXT NOT NULL,
            role    TEXT NOT NULL DEFAULT 'member'
        )"""
    )
