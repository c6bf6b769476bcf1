"""Plugin database schema (mautrix async_db; works on SQLite and PostgreSQL)."""

from __future__ import annotations

from mautrix.util.async_db import Connection, Scheme, UpgradeTable

upgrade_table = UpgradeTable()


def serial_id(scheme: Scheme) -> str:
    """An id column whose values are never handed out again (AUTOINCREMENT / SERIAL): ids
    people saw ("#3") stay theirs after a remove."""
    if scheme == Scheme.SQLITE:
        return "id INTEGER PRIMARY KEY AUTOINCREMENT"
    return "id SERIAL PRIMARY KEY"


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


@upgrade_table.register(description="Scheduled calls, their fired actions, room time zones")
async def upgrade_v2(conn: Connection, scheme: Scheme) -> None:
    id_column = serial_id(scheme)
    await conn.execute(
        f"""CREATE TABLE schedule (
            {id_column},
            room_id    TEXT NOT NULL,
            creator    TEXT NOT NULL,
            rule       TEXT NOT NULL,
            title      TEXT NOT NULL,
            remind_s   INTEGER NOT NULL DEFAULT 0,
            ring       BOOLEAN NOT NULL DEFAULT false,
            record     BOOLEAN NOT NULL DEFAULT false,
            duration_s INTEGER NOT NULL DEFAULT 0,
            created_ts BIGINT NOT NULL,
            active     BOOLEAN NOT NULL DEFAULT true
        )"""
    )
    await conn.execute("CREATE INDEX schedule_room_idx ON schedule (room_id)")
    # One row per (occurrence, kind) handled: inserted before posting, so nothing is posted
    # twice, even across restarts. outcome: posted, late or skipped.
    await conn.execute(
        """CREATE TABLE schedule_fired (
            schedule_id   INTEGER NOT NULL,
            occurrence_ts BIGINT NOT NULL,
            kind          TEXT NOT NULL,
            outcome       TEXT NOT NULL,
            fired_ts      BIGINT NOT NULL,
            PRIMARY KEY (schedule_id, occurrence_ts, kind)
        )"""
    )
    await conn.execute("CREATE TABLE room_timezone (room_id TEXT PRIMARY KEY, tz TEXT NOT NULL)")


@upgrade_table.register(description="Delegated delayed leaves (the authorization service's jobs)")
async def upgrade_v3(conn: Connection) -> None:
    # One row per (LiveKit room, identity), like lk-jwt-service's Redis hash: written before the
    # request is answered, updated on every restart, deleted when the job ends; read back at
    # start so a restart of the plugin keeps the jobs. delay_id is a capability (never logged).
    await conn.execute(
        """CREATE TABLE delegated_leave (
            livekit_room     TEXT NOT NULL,
            identity         TEXT NOT NULL,
            delay_id         TEXT NOT NULL,
            delay_timeout_ms BIGINT NOT NULL,
            server_name      TEXT NOT NULL,
            user_id          TEXT NOT NULL,
            room_id          TEXT NOT NULL,
            phase            TEXT NOT NULL,
            created_ms       BIGINT NOT NULL,
            restarted_ms     BIGINT NOT NULL,
            sid              TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (livekit_room, identity)
        )"""
    )


@upgrade_table.register(description="Recordings in progress (posted after a crash)")
async def upgrade_v4(conn: Connection) -> None:
    # A row while a recording runs: if the process dies (kill -9, OOM), the next start finds
    # it and posts what was written until then instead of leaving it unmentioned on disk.
    await conn.execute(
        """CREATE TABLE recording_in_progress (
            room_id    TEXT NOT NULL,
            prefix     TEXT NOT NULL,
            directory  TEXT NOT NULL,
            started_ms BIGINT NOT NULL,
            PRIMARY KEY (room_id, prefix)
        )"""
    )


@upgrade_table.register(description="Transcripts/captions per room, recording opt-outs")
async def upgrade_v5(conn: Connection) -> None:
    # A room's choice overrides the config's default (`!call transcript|captions on|off`).
    await conn.execute(
        """CREATE TABLE room_feature (
            room_id TEXT NOT NULL,
            feature TEXT NOT NULL,
            enabled BOOLEAN NOT NULL,
            PRIMARY KEY (room_id, feature)
        )"""
    )
    # People who asked to be left out of this room's recordings (`!call record optout`).
    await conn.execute(
        """CREATE TABLE recording_optout (
            room_id   TEXT NOT NULL,
            user_id   TEXT NOT NULL,
            anonymous BOOLEAN NOT NULL,
            since_ms  BIGINT NOT NULL,
            PRIMARY KEY (room_id, user_id)
        )"""
    )


@upgrade_table.register(description="Posted recordings (what `!call record delete` removes)")
async def upgrade_v6(conn: Connection) -> None:
    # One row per posted recording: its summary, the file messages, the files on disk (JSON
    # lists), so a moderator can delete it whole; removed with it.
    await conn.execute(
        """CREATE TABLE recording_posted (
            room_id  TEXT NOT NULL,
            summary  TEXT NOT NULL,
            events   TEXT NOT NULL,
            files    TEXT NOT NULL,
            ended_ms BIGINT NOT NULL,
            PRIMARY KEY (room_id, summary)
        )"""
    )


@upgrade_table.register(
    description="Transcript lines, their full-text index (`!call search`), recaps"
)
async def upgrade_v7(conn: Connection, scheme: Scheme) -> None:
    # One row per transcript line, for search: the room, the recording (its summary event), the
    # transcript message to link to, when the recording started, the line's time in the call,
    # the speaker (display name, and the user when known: opt-out removes their lines).
    id_column = serial_id(scheme)
    await conn.execute(
        f"""CREATE TABLE transcript_line (
            {id_column},
            room_id    TEXT NOT NULL,
            recording  TEXT NOT NULL,
            message    TEXT NOT NULL,
            started_ms BIGINT NOT NULL,
            at_s       REAL NOT NULL,
            end_s      REAL NOT NULL,
            speaker    TEXT NOT NULL,
            user_id    TEXT NOT NULL,
            text       TEXT NOT NULL
        )"""
    )
    await conn.execute("CREATE INDEX transcript_line_room ON transcript_line (room_id, recording)")
    # The recap message of a recording (`!call recap now` edits it in place).
    await conn.execute(
        """CREATE TABLE recap_message (
            room_id   TEXT NOT NULL,
            recording TEXT NOT NULL,
            event_id  TEXT NOT NULL,
            PRIMARY KEY (room_id, recording)
        )"""
    )
    if scheme == Scheme.SQLITE:
        # FTS5 over the text, kept in step with the table by triggers (external content).
        await conn.execute(
            "CREATE VIRTUAL TABLE transcript_fts USING fts5(text, content='transcript_line', "
            "content_rowid='id', tokenize='unicode61 remove_diacritics 0')"
        )
        await conn.execute(
            "CREATE TRIGGER transcript_line_ai AFTER INSERT ON transcript_line BEGIN "
            "INSERT INTO transcript_fts(rowid, text) VALUES (new.id, new.text); END"
        )
        await conn.execute(
            "CREATE TRIGGER transcript_line_ad AFTER DELETE ON transcript_line BEGIN "
            "INSERT INTO transcript_fts(transcript_fts, rowid, text) "
            "VALUES ('delete', old.id, old.text); END"
        )
    else:
        await conn.execute(
            "CREATE INDEX transcript_line_fts ON transcript_line "
            "USING GIN (to_tsvector('simple', text))"
        )
