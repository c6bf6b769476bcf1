"""`!call search`: the room's own transcripts, searchable in the bot's database.

SQLite: an FTS5 index (unicode61, case folded, accents kept) ranked by bm25; PostgreSQL: a GIN index
on `to_tsvector('simple', text)` ranked by ts_rank. Both match whole words, no stemming, every
word of the query (AND), so the two give the same hits. A query only ever reads the asking
room's rows. The index follows the recordings: a deleted recording's lines go with it, and a
person who opts out of a room's recordings takes their words out of its search too.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from mautrix.util.async_db import Database, Scheme

from .lines import Line

MAX_QUERY_WORDS = 8
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class IndexedLine:
    speaker: str
    user_id: str  # "" when only a hashed LiveKit identity was known
    line: Line


@dataclass(frozen=True)
class Hit:
    recording: str
    message: str
    started_ms: int
    at_s: float
    speaker: str
    text: str


def query_words(text: str) -> list[str]:
    """The words to look for: letters and digits only (no query syntax gets through)."""
    folded = unicodedata.normalize("NFKC", text).lower()
    return _WORD.findall(folded)[:MAX_QUERY_WORDS]


class TranscriptSearch:
    def __init__(self, db: Database) -> None:
        self.db = db

    @property
    def _sqlite(self) -> bool:
        return self.db.scheme == Scheme.SQLITE

    async def index(
        self,
        room_id: str,
        recording: str,
        message: str,
        started_ms: int,
        lines: Sequence[IndexedLine],
    ) -> None:
        rows = [
            (room_id, recording, message, started_ms, il.line.start, il.line.end, il.speaker,
             il.user_id, il.line.text)
            for il in lines
        ]  # fmt: skip
        await self.db.executemany(
            "INSERT INTO transcript_line (room_id, recording, message, started_ms, at_s, end_s, "
            "speaker, user_id, text) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            rows,
        )

    async def lines_of(self, room_id: str, recording: str) -> list[Line]:
        """A recording's transcript as indexed (opted-out people's lines taken out)."""
        rows = await self.db.fetch(
            "SELECT speaker, at_s, end_s, text FROM transcript_line "
            "WHERE room_id=$1 AND recording=$2 ORDER BY at_s, id",
            room_id,
            recording,
        )
        return [
            Line(str(r["speaker"]), float(r["at_s"]), float(r["end_s"]), str(r["text"]))
            for r in rows
        ]

    async def latest_recording(self, room_id: str) -> str | None:
        value = await self.db.fetchval(
            "SELECT recording FROM transcript_line WHERE room_id=$1 "
            "ORDER BY started_ms DESC, id DESC LIMIT 1",
            room_id,
        )
        return None if value is None else str(value)

    async def search(
        self, room_id: str, text: str, limit: int = 5, any_word: bool = False
    ) -> list[Hit]:
        """Lines with every word of `text` (or, `any_word`, with any of them), best first."""
        words = query_words(text)
        if not words:
            return []
        if self._sqlite:
            # Each word a quoted token (no syntax gets through): AND by juxtaposition.
            match = (" OR " if any_word else " ").join(f'"{w}"' for w in words)
            rows = await self.db.fetch(
                "SELECT l.recording, l.message, l.started_ms, l.at_s, l.speaker, l.text "
                "FROM transcript_fts JOIN transcript_line l ON l.id = transcript_fts.rowid "
                "WHERE transcript_fts MATCH $1 AND l.room_id = $2 "
                "ORDER BY bm25(transcript_fts), l.started_ms DESC LIMIT $3",
                match,
                room_id,
                limit,
            )
        else:
            # \w+ words only: nothing for to_tsquery to parse.
            query = (" | " if any_word else " & ").join(words)
            rows = await self.db.fetch(
                "SELECT recording, message, started_ms, at_s, speaker, text FROM transcript_line "
                "WHERE room_id = $1 AND to_tsvector('simple', text) @@ to_tsquery('simple', $2) "
                "ORDER BY ts_rank(to_tsvector('simple', text), to_tsquery('simple', $2)) DESC, "
                "started_ms DESC LIMIT $3",
                room_id,
                query,
                limit,
            )
        return [
            Hit(
                str(r["recording"]),
                str(r["message"]),
                int(r["started_ms"]),
                float(r["at_s"]),
                str(r["speaker"]),
                str(r["text"]),
            )
            for r in rows
        ]

    async def forget_recording(self, room_id: str, recording: str) -> None:
        await self.db.execute(
            "DELETE FROM transcript_line WHERE room_id=$1 AND recording=$2", room_id, recording
        )

    async def forget_speaker(self, room_id: str, user_id: str) -> None:
        await self.db.execute(
            "DELETE FROM transcript_line WHERE room_id=$1 AND user_id=$2", room_id, user_id
        )
