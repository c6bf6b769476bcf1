"""Recaps after the call: the transcript's lines → the model (map, then reduce) → the thread.

Runs after a transcript is posted, when recaps are on for the room (`!call recap on|off`, else
`recap.enabled`) and a model is configured. It reads the transcript from the room's search
index, so opted-out people's lines (taken out there) never reach the model. It posts "making a
recap …" in the recording's thread and edits that message into the recap, or into one
sentence saying there is none this time: never a half recap shown as whole. `!call recap now`
makes the latest recording's recap again, edited into the same message.
"""

from __future__ import annotations

import asyncio
import time

from mautrix.types import EventID, RoomID

from ..commands.features import feature_enabled
from ..context import BotContext
from ..matrix.notices import in_thread
from .chat_client import ChatClient
from .recap import (
    Recap,
    RecapError,
    chunks,
    combine,
    parse_answer,
    parse_summary,
    part_requests,
    reduce_request,
    render,
    require_content,
)
from .search import TranscriptSearch

FEATURE = "recap"
MAKING = "🧾 Making a recap of this call …"
NONE_THIS_TIME = "🧾 No recap this time: {why} (the log says more)."


class Recaps:
    def __init__(self, ctx: BotContext, search: TranscriptSearch, client: ChatClient) -> None:
        self.ctx = ctx
        self.search = search
        self.client = client
        self.log = ctx.logger("recaps")
        self.lock = asyncio.Lock()  # one request at a time: the model is one machine's

    def configured(self) -> bool:
        return bool(self.ctx.settings().recap.base_url)

    async def enabled_in(self, room_id: str) -> bool:
        settings = self.ctx.settings().recap
        on, _ = await feature_enabled(self.ctx, room_id, FEATURE, settings.enabled)
        return on and self.configured()

    async def after_transcript(self, room: RoomID, recording: EventID, last: EventID) -> None:
        if not await self.enabled_in(room):
            return
        await self.make(room, recording, thread_last=last)

    async def make(
        self, room: RoomID, recording: EventID, thread_last: EventID | None = None
    ) -> str:
        """Post (or edit in place) the recording's recap; returns what the room now reads."""
        existing = await self._message_of(room, recording)
        if existing is None:
            existing = await self.ctx.notices.send(
                room, MAKING, thread=in_thread(recording, thread_last or recording)
            )
            await self._remember(room, recording, existing)
        else:
            await self.ctx.notices.edit(room, existing, MAKING)
        started = time.monotonic()
        try:
            async with self.lock:
                recap = await self._recap(room, recording)
            text = render(recap, self.byline())
            self.log.info(
                "recap of %s in %s: %d decisions, %d action items, %.1f s",
                recording,
                room,
                len(recap.decisions),
                len(recap.actions),
                time.monotonic() - started,
            )
        except RecapError as e:
            self.log.warning("no recap of %s in %s: %s", recording, room, e)
            text = NONE_THIS_TIME.format(why=_short(str(e)))
        await self.ctx.notices.edit(room, existing, text)
        return text

    async def _recap(self, room: RoomID, recording: EventID) -> Recap:
        settings = self.ctx.settings().recap
        lines = await self.search.lines_of(room, recording)
        if not lines:
            raise RecapError("the transcript has no lines")
        parts: list[Recap] = []
        summaries: list[str] = []
        for chunk in chunks(lines, settings.max_input_chars):
            for request in part_requests(chunk):
                answer = await self.client.complete(settings, request.messages, request.schema)
                part = parse_answer(request, answer)
                parts.append(part)
                if not request.speaker:
                    summaries.append(part.summary)
        summaries = [s for s in summaries if s]
        if len(summaries) <= 1:
            return require_content(combine(parts))
        reduce = reduce_request(summaries)
        answer = await self.client.complete(settings, reduce.messages, reduce.schema)
        return require_content(combine(parts, parse_summary(answer)))

    def byline(self) -> str:
        settings = self.ctx.settings().recap
        model = settings.model or "a language model"
        return f"by {model}, {settings.where()}; it can be wrong"

    async def _message_of(self, room: str, recording: str) -> EventID | None:
        value = await self.ctx.db.db.fetchval(
            "SELECT event_id FROM recap_message WHERE room_id=$1 AND recording=$2",
            room,
            recording,
        )
        return None if value is None else EventID(str(value))

    async def _remember(self, room: str, recording: str, event_id: str) -> None:
        await self.ctx.db.db.execute(
            "INSERT INTO recap_message (room_id, recording, event_id) VALUES ($1, $2, $3) "
            "ON CONFLICT (room_id, recording) DO UPDATE SET event_id=excluded.event_id",
            room,
            recording,
            event_id,
        )

    async def forget(self, room: str, recording: str) -> None:
        await self.ctx.db.db.execute(
            "DELETE FROM recap_message WHERE room_id=$1 AND recording=$2", room, recording
        )


def _short(reason: str) -> str:
    """The fixed part of a RecapError for the room (no server text is ever in one)."""
    return reason.split(" (")[0].rstrip(".")
