"""`!call search`'s index on both databases the plugin supports (SQLite FTS5 and PostgreSQL
full text, a real server started by the test): the same hits for the same words, only the
asking room's, none after the recording is deleted or its speaker opted out, and no query
syntax from the words people type."""

from __future__ import annotations

import pytest

from rtcbot.db import DB
from rtcbot.transcripts.lines import Line
from rtcbot.transcripts.search import IndexedLine, TranscriptSearch, query_words
from tests.integration.test_database import db, postgres_url  # noqa: F401  (fixtures)

pytestmark = pytest.mark.stack


def said(speaker: str, user: str, text: str, at: float = 1.0) -> IndexedLine:
    return IndexedLine(speaker, user, Line(speaker, at, at + 2, text))


async def test_search_is_room_bound_and_follows_deletion_and_opt_out(db: DB) -> None:  # noqa: F811
    search = TranscriptSearch(db.db)
    await search.index(
        "!r",
        "$rec1",
        "$msg1",
        1_000,
        [
            said("Alice", "@alice:x", "We cut the Budget for the launch", 3.0),
            said("Bob", "@bob:x", "Bob owns the launch plan", 65.5),
        ],
    )
    await search.index("!other", "$rec2", "$msg2", 2_000, [said("Eve", "@eve:x", "budget secret")])
    await search.index("!r", "$rec3", "$msg3", 3_000, [said("Carol", "@carol:x", "zebra budget")])

    hits = await search.search("!r", "budget")
    assert sorted((h.recording, h.speaker) for h in hits) == [
        ("$rec1", "Alice"),
        ("$rec3", "Carol"),
    ]
    launch = await search.search("!r", "LAUNCH plan")  # every word, case folded
    assert [(h.speaker, h.message, h.at_s, h.started_ms) for h in launch] == [
        ("Bob", "$msg1", 65.5, 1_000)
    ]
    assert await search.search("!r", "secret") == []  # another room's words
    assert await search.search("!other", "launch") == []
    # What people type is words, never query syntax: quotes, operators, stars, NEAR().
    assert await search.search("!r", 'budget" OR "secret') == []
    assert await search.search("!r", "*") == []
    assert [h.speaker for h in await search.search("!r", "zebra) OR (budget")] == []
    assert [h.speaker for h in await search.search("!r", "NEAR(zebra budget)")] == []

    # Any word (for `!call ask`): lines with one of them, still only this room's.
    either = await search.search("!r", "zebra plan", any_word=True)
    assert sorted(h.speaker for h in either) == ["Bob", "Carol"]
    assert await search.search("!other", "zebra plan", any_word=True) == []

    await search.forget_speaker("!r", "@bob:x")  # opted out: his words leave the search
    assert await search.search("!r", "plan") == []
    await search.forget_recording("!r", "$rec1")  # deleted: its lines go
    assert [h.recording for h in await search.search("!r", "budget")] == ["$rec3"]
    assert [h.speaker for h in await search.search("!other", "budget")] == ["Eve"]


def test_query_words_are_letters_and_digits() -> None:
    assert query_words('Budget" OR "secret*') == ["budget", "or", "secret"]
    assert query_words("ＦＵＬＬ width") == ["full", "width"]
    assert query_words("a " * 50) == ["a"] * 8
