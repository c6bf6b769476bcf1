"""The call card at the end of every call: collects each call's events and who spoke, posts.

CallManager hands this class every derived call event as it happens (`on_event`, called
synchronously, in order) and, where `!call notify` would post the end of a call, the end
itself (`post_ended`; False: the card is off, post the plain line). Talk time comes from
media/talk_timeline.py: the recorder's audio tap (`tap_for`, a tap factory of the media sessions) or,
when the bot is in the call's SFU without recording, LiveKit's active speakers of the bot's
participant (followed every second: a reconnect makes a new rtc.Room). The picture of who
spoke when is drawn off the loop and posted as an m.image replying to the card (encrypted in
an encrypted room).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from mautrix.types import (
    EventID,
    ImageInfo,
    InReplyTo,
    MediaMessageEventContent,
    MessageType,
    RelatesTo,
    RoomID,
)

from ..context import BotContext
from ..matrix.attachments import upload_for_room
from ..matrix.notices import NAME_LIMIT, md_escape
from ..media.recorder import AudioTap
from ..media.talk_timeline import Owner, SpeakerListener, TalkTimeline
from ..media.timeline_image import Row, draw_timeline
from ..rtc.call_card import CallCard, CallLog, Interval, build_card, card_markdown
from ..rtc.session import ActiveCall, CallEnded, CallEvent, CallStarted
from ..schedules.store import ScheduleStore
from ..tasks import Periodic

CallKey = tuple[str, str, str]  # room, application, slot
DisplayName = Callable[[str, str], Awaitable[str]]
CurrentCall = Callable[[str, tuple[str, str]], ActiveCall | None]
SfuRoom = Callable[[str], Any]  # room → the bot participant's rtc.Room, or None
IdentityOwner = Callable[[str, str], tuple[str, str] | None]  # room, identity → (user, device)
FOLLOW_EVERY_S = 1.0
IMAGE_NAME = "call-timeline.png"


class CallCards:
    def __init__(
        self,
        ctx: BotContext,
        *,
        display_name: DisplayName,
        current_call: CurrentCall,
        sfu_room: SfuRoom,
        owner: IdentityOwner,
        opted_out: Callable[[str, str], bool] = lambda _room, _user: False,
    ) -> None:
        self.ctx = ctx
        self.log = ctx.logger("call_cards")
        self.display_name = display_name
        self.current_call = current_call
        self.sfu_room = sfu_room
        self.owner = owner
        # People who opted out of recordings (recording/optout.py): no talk time, no bars.
        self.opted_out = opted_out
        self.logs: dict[CallKey, CallLog] = {}
        self._ended: dict[CallKey, CallLog] = {}  # ended, until its card is made
        self.timelines: dict[str, TalkTimeline] = {}
        self.listeners: dict[str, SpeakerListener] = {}
        self._in_sfu: set[str] = set()  # rooms where the bot's participant was in this call
        self._follower = Periodic(
            self._follow, lambda: FOLLOW_EVERY_S, self.log, "following the active speakers"
        )

    async def start(self) -> None:
        self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()
        for listener in self.listeners.values():
            listener.stop()
        self.listeners.clear()

    async def forget_room(self, room_id: str) -> None:
        self._in_sfu.discard(room_id)
        for store in (self.logs, self._ended):
            for key in [k for k in store if k[0] == room_id]:
                del store[key]
        listener = self.listeners.pop(room_id, None)
        if listener is not None:
            listener.stop()
        self.timelines.pop(room_id, None)

    def _timeline(self, room_id: str) -> TalkTimeline:
        timeline = self.timelines.get(room_id)
        if timeline is None:
            owner: Owner = lambda identity: self.owner(room_id, identity)  # noqa: E731
            timeline = self.timelines[room_id] = TalkTimeline(owner)
        return timeline

    # -- inputs ------------------------------------------------------------------------------
    def on_event(self, room_id: str, ev: CallEvent) -> None:
        """Every derived event of every call, in order (synchronous: nothing may await)."""
        key = (room_id, ev.application, ev.slot_id)
        log = self.logs.get(key)
        if isinstance(ev, CallStarted):
            log = self.logs[key] = CallLog(room_id, ev.slot_id, ev.at_ms)
            self._in_sfu.discard(room_id)
            self._timeline(room_id)
        elif log is None:
            # A call that was going on before the bot (re)started: what its model knows now.
            call = self.current_call(room_id, (ev.application, ev.slot_id))
            if call is not None:
                log = self.logs[key] = CallLog.seeded(call)
            elif isinstance(ev, CallEnded):
                log = CallLog(room_id, ev.slot_id, ev.started_at_ms, partial=True)
            else:
                return
        log.apply(ev)
        if isinstance(ev, CallEnded):
            self.logs.pop(key, None)
            self._ended[key] = log

    def tap_for(self, room_id: str) -> AudioTap | None:
        """Tap factory of the media sessions: a recording starts in the room."""
        if not self.ctx.settings().call_card.enabled:
            return None
        return self._timeline(room_id).tap()

    def _follow(self) -> None:
        active = {k[0] for k in self.logs}
        for room_id in list(self.listeners):
            if room_id not in active:
                self.listeners.pop(room_id).stop()
        if not self.ctx.settings().call_card.enabled:
            return
        for room_id in active:
            room = self.sfu_room(room_id)
            listener = self.listeners.get(room_id)
            if listener is None:
                if room is None:
                    continue
                listener = self.listeners[room_id] = SpeakerListener(
                    self._timeline(room_id), self.log
                )
            listener.follow(room)
            if room is not None:
                self._in_sfu.add(room_id)

    # -- the card ----------------------------------------------------------------------------
    async def post_ended(self, room_id: str, ev: CallEnded) -> bool:
        """Post the card of this ended call; False when cards are off (the caller posts the
        plain line instead)."""
        settings = self.ctx.settings().call_card
        key = (room_id, ev.application, ev.slot_id)
        log = self._ended.pop(key, None)
        if not settings.enabled:
            return False
        if log is None:
            log = CallLog(room_id, ev.slot_id, ev.started_at_ms, partial=True)
            log.apply(ev)
        talk, source = self._talk(room_id, log)
        users = list(dict.fromkeys([*log.stints, *(talk or {})]))
        names = {u: await self.display_name(room_id, u) for u in users}
        card = build_card(log, names, talk, source)
        if any(self.opted_out(room_id, p.user_id) for p in card.people):
            card = replace(
                card,
                people=tuple(
                    replace(p, talk=(), talk_ms=None) if self.opted_out(room_id, p.user_id) else p
                    for p in card.people
                ),
            )
        tz, tz_name = await self._zone(room_id)
        in_sfu = room_id in self._in_sfu or self.sfu_room(room_id) is not None
        self._in_sfu.discard(room_id)
        why = (
            "I was in the call's media only to speak, and LiveKit tells who speaks only to "
            "those who listen"
            if in_sfu
            else None
        )
        text = card_markdown(
            card, lambda s: md_escape(s, NAME_LIMIT), tz, tz_name, why_unknown=why
        )
        event_id = await self.ctx.notices.send(
            RoomID(room_id), text, extra={"call_card": card.to_json()}
        )
        if settings.image and card.talk_source is not None and card.people:
            self.ctx.tasks.spawn(self._post_image(room_id, card, event_id), "call-card-image")
        return True

    def _talk(
        self, room_id: str, log: CallLog
    ) -> tuple[dict[str, list[Interval]] | None, str | None]:
        timeline = self.timelines.get(room_id)
        if timeline is None:
            return None, None
        end_ms = log.ended_ms if log.ended_ms is not None else log.started_ms
        data = timeline.window(log.started_ms / 1000, end_ms / 1000)
        timeline.drop_before(end_ms / 1000)
        if data is None:
            return None, None
        talk = {
            user: [(round(s * 1000), round(e * 1000)) for s, e in spans]
            for user, spans in data.talk.items()
            if user != self.ctx.user_id  # the bot's own announcements are not talk
        }
        return talk, data.source

    async def _zone(self, room_id: str) -> tuple[tzinfo, str]:
        """The room's schedule timezone (`!call schedule tz`), else UTC."""
        try:
            name = await ScheduleStore(self.ctx.db.db).get_timezone(room_id)
            if name:
                return ZoneInfo(name), name
        except Exception as e:  # an unknown zone name: UTC rather than no card
            self.log.warning("timezone of %s unusable for the call card: %s", room_id, e)
        return UTC, "UTC"

    async def _post_image(self, room_id: str, card: CallCard, reply_to: EventID) -> None:
        start = card.started_ms
        rows = [
            Row(
                p.name,
                [((s - start) / 1000, (e - start) / 1000) for s, e in p.stints],
                [((s - start) / 1000, (e - start) / 1000) for s, e in p.talk],
            )
            for p in card.people
        ]
        try:
            data, layout = await asyncio.to_thread(draw_timeline, rows, card.duration_ms / 1000)
            where = await upload_for_room(
                self.ctx.client, RoomID(room_id), data, "image/png", IMAGE_NAME
            )
            content = MediaMessageEventContent(
                msgtype=MessageType.IMAGE,
                body="Who spoke when in the call",  # plain text: not rendered
                info=ImageInfo(
                    mimetype="image/png", size=len(data), width=layout.width, height=layout.height
                ),
                **where,
            )
            content["filename"] = IMAGE_NAME
            content.relates_to = RelatesTo(in_reply_to=InReplyTo(event_id=reply_to))
            await self.ctx.client.send_message(RoomID(room_id), content)
        except Exception:
            self.log.exception("posting the call card's picture in %s failed", room_id)
