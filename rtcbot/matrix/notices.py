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
    RelationType,
    RoomID,
    TextMessageEventContent,
)

from ..redaction import redact

try:
    import commonmark

    _PARSER = commonmark.Parser()
    # "safe": raw HTML is dropped and javascript: links are neutralised. The bot's own markdown
    # never needs raw HTML (callers pass html_body for that); people's text is md_escape()d.
    _RENDERER = commonmark.HtmlRenderer({"safe": True})

    def _md_to_html(text: str) -> str:
        return str(_RENDERER.render(_PARSER.parse(text))).strip()

except ImportError:  # pragma: no cover - maubot ships commonmark

    def _md_to_html(text: str) -> str:
        return f"<p>{html.escape(text)}</p>"


# Every character CommonMark may read as markup (ASCII punctuation can be backslash-escaped).
_MD_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")
_PLAIN = re.compile(r"\\([!-/:-@\[-`{-~])|\*\*|`")
TRUNCATED = "… (truncated)"
NAME_LIMIT = 80  # display names in notices


def md_escape(text: str, limit: int = 200) -> str:
    """People's text (names, titles, arguments) for the bot's markdown: shown literally, never
    as markup, a link or HTML; on one line; at most `limit` characters, with a note if cut."""
    flat = " ".join(str(text).split())
    if len(flat) > limit:
        flat = flat[:limit].rstrip() + TRUNCATED
    return _MD_SPECIAL.sub(r"\\\1", flat)


def _strip_md(text: str) -> str:
    """Plain-text body for clients without HTML: drop the markdown markers people don't read,
    and turn escaped characters back into themselves."""
    return _PLAIN.sub(lambda m: m.group(1) or "", text)


def in_thread(root: EventID, last: EventID | None = None) -> RelatesTo:
    """A threaded reply to `root` (MSC3440), replying to `last` for clients without threads."""
    return RelatesTo(
        rel_type=RelationType.THREAD,
        event_id=root,
        is_falling_back=True,
        in_reply_to=InReplyTo(event_id=last or root),
    )


class Notices:
    """Every message the bot posts goes through here (one place to tag and format them)."""

    TAG = "dev.rtcbot"

    def __init__(self, client: Client) -> None:
        self.client = client

    def _content(
        self, markdown: str, html_body: str | None, extra: dict[str, Any] | None
    ) -> TextMessageEventContent:
        # Whatever the bot says goes through the one scrubber: no secret reaches a room.
        content = TextMessageEventContent(
            msgtype=MessageType.NOTICE,
            body=redact(_strip_md(markdown)),
            format=Format.HTML,
            formatted_body=redact(html_body if html_body is not None else _md_to_html(markdown)),
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
        thread: RelatesTo | None = None,
    ) -> EventID:
        content = self._content(markdown, html_body, extra)
        content["m.mentions"] = {"room": True} if mentions_room else {}
        if thread is not None:  # in_thread(root): a message in a thread
            content.relates_to = thread
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
