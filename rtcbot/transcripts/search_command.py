"""`!call search <words>`: where this room's recorded calls said them (any member may ask)."""

from __future__ import annotations

import time
import urllib.parse

from ..commands.router import CommandContext, CommandRouter
from ..matrix.notices import NAME_LIMIT, md_escape
from .lines import stamp
from .search import Hit, TranscriptSearch, query_words

MAX_HITS = 5
QUOTE_CHARS = 160


def event_link(room_id: str, event_id: str) -> str:
    quote = urllib.parse.quote
    return f"https://matrix.to/#/{quote(room_id, safe='')}/{quote(event_id, safe='')}"


def render_hit(room_id: str, hit: Hit) -> str:
    day = time.strftime("%Y-%m-%d", time.gmtime(hit.started_ms / 1000))
    text = hit.text if len(hit.text) <= QUOTE_CHARS else hit.text[: QUOTE_CHARS - 1] + "…"
    return (
        f"- {day}, {md_escape(hit.speaker, NAME_LIMIT)} at {stamp(hit.at_s)}: "
        f"“{md_escape(text, QUOTE_CHARS + 1)}” ([transcript]({event_link(room_id, hit.message)}))"
    )


class SearchCommand:
    def __init__(self, search: TranscriptSearch) -> None:
        self.search = search

    def register(self, router: CommandRouter) -> None:
        router.add(
            "search",
            "<words>",
            "find where this room's recorded calls said these words (in their transcripts)",
            self.run,
        )

    async def run(self, ctx: CommandContext) -> None:
        words = query_words(ctx.line.rest)
        if not words:
            await ctx.reply(f"Usage: `{ctx.prefix} search <words>` (every word must be said).")
            return
        asked = md_escape(" ".join(words), 200)
        hits = await self.search.search(ctx.room_id, " ".join(words), MAX_HITS)
        if not hits:
            await ctx.reply(f"🔎 Nothing found for “{asked}” in this room's transcripts.")
            return
        head = f"🔎 “{asked}” in this room's transcripts"
        head += ":" if len(hits) < MAX_HITS else f" (the best {MAX_HITS}):"
        await ctx.reply("\n".join([head, *(render_hit(ctx.room_id, h) for h in hits)]))
