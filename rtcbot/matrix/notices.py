"""Posting the bot's messages: m.notice with HTML, replies, edits in place."""

from __future__ import annotations

import html
import re
from typing import Any

from mautrix.client import Client
from mautrix.types import (
    EventID,
    Format,
    InReplyTo,
    MessageType,
    RelatesTo,
    RoomID,
    TextMessageEventContent,
)

try:
    import commonmark

    def _md_to_html(text: str) -> str:
        return str(commonmark.commonmark(text)).strip()

except ImportError:  # pragma: no cover - maubot ships commonmark

    def _md_to_html(text: str) -> str:
        return f"<p>{html.escape(text)}</p>"


def _strip_md(text: str) -> str:
    """Plain-text body for clients without HTML: drop the markdown markers people don't read."""
    return re.sub(r"(\*\*|`)", "", text)


class Notices:
    """Every message the bot posts goes through here (one place to tag and format them)."""

    TAG = "dev.rtcbot"

    def __init__(self, client: Client) -> None:
        self.client = client

    def _content(
        self, markdown: str, html_body: str | None, extra: dict[str, Any] | None
    ) -> TextMessageEventContent:
        content = TextMessageEventContent(
            msgtype=MessageType.NOTICE,
            body=_strip_md(markdown),
            format=Format.HTML,
            formatted_body=html_body if html_body is not None else _md_to_html(markdown),
        )
        content[self.TAG] = extra or {}
        return content

    async def send(
        self,
        room_id: RoomID,
        markdown: str,
        html_body: str | None = None,
        extra: dict[str, Any] | None = None,
        mentions_room: bool = False,
    ) -> EventID:
        content = self._content(markdown, html_body, extra)
        content["m.mentions"] = {"room": True} if mentions_room else {}
        return await self.client.send_message(room_id, content)

    async def reply(
        self, room_id: RoomID, to: EventID, markdown: str, html_body: str | None = None
    ) -> EventID:
        content = self._content(markdown, html_body, None)
        content.relates_to = RelatesTo(in_reply_to=InReplyTo(event_id=to))
        content["m.mentions"] = {}
        return await self.client.send_message(room_id, content)

    async def edit(
        self, room_id: RoomID, event_id: EventID, markdown: str, html_body: str | None = None
    ) -> EventID:
        content = self._content(markdown, html_body, None)
        content.set_edit(event_id)
        return await self.client.send_message(room_id, content)
