"""`!call ask <question>`: an answer from this room's transcripts, with the passages it used.

Only where recaps are on for the room (the same consent: the room's words go to the same
configured model) and a model is configured. The room's search finds the passages (any of the
question's words; only this room's lines, opted-out people's never); without one the model is
not asked. One question at a time per instance (the model is one machine's), and a room asks
at most once every `ASK_EVERY_S` seconds.
"""

from __future__ import annotations

import time

from ..commands.router import CommandContext, CommandRouter
from ..matrix.notices import md_escape
from .ask import ANSWER_CHARS, SCHEMA, messages, parse
from .chat_client import ChatClient
from .recap import RecapError, content_words
from .recaps import Recaps
from .search import TranscriptSearch
from .search_command import render_hit

PASSAGES = 8
ASK_EVERY_S = 10.0
MAX_QUESTION = 300


class AskCommand:
    def __init__(self, recaps: Recaps, search: TranscriptSearch, client: ChatClient) -> None:
        self.recaps, self.search, self.client = recaps, search, client
        self._last: dict[str, float] = {}  # room → when it last asked

    def register(self, router: CommandRouter) -> None:
        router.add(
            "ask",
            "<question>",
            "an answer from this room's transcripts, with the passages it comes from "
            "(where recaps are on)",
            self.run,
        )

    async def run(self, ctx: CommandContext) -> None:
        question = ctx.line.rest.strip()
        if not question:
            await ctx.reply(f"Usage: `{ctx.prefix} ask <question>`")
            return
        if len(question) > MAX_QUESTION:
            await ctx.reply(f"Please ask in under {MAX_QUESTION} characters.")
            return
        if not await self.recaps.enabled_in(ctx.room_id):
            await ctx.reply(
                f"💬 Questions use the recap's model, and recaps are off here "
                f"(`{ctx.prefix} recap on`, moderators)."
            )
            return
        now = time.monotonic()
        if now - self._last.get(ctx.room_id, -ASK_EVERY_S) < ASK_EVERY_S:
            await ctx.reply("💬 One question at a time, please: ask again in a few seconds.")
            return
        self._last[ctx.room_id] = now
        words = " ".join(sorted(content_words(question)))
        hits = await self.search.search(ctx.room_id, words, PASSAGES, any_word=True)
        if not hits:
            await ctx.reply("💬 I found nothing about that in this room's transcripts.")
            return
        settings = self.recaps.ctx.settings().recap
        try:
            async with self.recaps.lock:
                answer = parse(
                    await self.client.complete(settings, messages(question, hits), SCHEMA), hits
                )
        except RecapError as e:
            self.recaps.log.warning("no answer in %s: %s", ctx.room_id, e)
            await ctx.reply("💬 No answer this time: the model failed (the log says more).")
            return
        shown = answer.used or hits[:3]
        head = "From:" if answer.used else "It cited no passage; the closest ones:"
        await ctx.reply(
            "\n".join(
                [
                    f"💬 {md_escape(answer.text, ANSWER_CHARS)} _({md_escape(self.recaps.byline())})_",
                    head,
                    *(render_hit(ctx.room_id, h) for h in shown),
                ]
            )
        )
