"""Following calls as they start and end: the room's auto role (`!call auto record|announce`),
a recording a schedule asked for, and leaving when the call is over."""

from __future__ import annotations

import contextlib
import time

from mautrix.types import RoomID

from ..matrix.crypto_status import crypto_refusal
from ..ports import CallEvent
from ..rtc.session import CallEnded, CallStarted
from .errors import MediaError, RecordingCancelled, why
from .session import RoomMedia
from .sessions import MediaSessions


class CallFollower:
    def __init__(self, sessions: MediaSessions) -> None:
        self.sessions = sessions
        self.ctx = sessions.ctx
        self.log = sessions.log

    async def on_call_event(self, room_id: str, ev: CallEvent) -> None:
        """Observer of CallManager: join in the room's auto role (or for a scheduled recording)
        when people start a call, leave when it ends."""
        if isinstance(ev, CallStarted) and ev.started_by != self.ctx.user_id:
            await self._started(self.sessions.session(room_id))
        elif isinstance(ev, CallEnded) and room_id in self.sessions.rooms:
            await self._ended(self.sessions.rooms[room_id])

    async def _started(self, session: RoomMedia) -> None:
        room_id = session.room_id
        armed = session.armed_until_ms >= int(time.time() * 1000)
        session.armed_until_ms = 0
        role = await self.ctx.db.get_auto_role(room_id)
        if armed and role != "record":
            role = "record"
        if role is None:
            return
        # Encrypted room, no E2EE: say why instead of recording noise (matrix/crypto_status.py).
        if (refusal := await crypto_refusal(self.ctx.client, RoomID(room_id), role)) is not None:
            await self.ctx.notices.send(RoomID(room_id), refusal)
            return
        try:
            if role == "record" and session.recorder is None:
                await session.start_recording()
                why_now = (
                    "a schedule asked for it"
                    if armed
                    else f"auto-record is on here; `{session.command} auto off` turns it off"
                )
                await self.ctx.notices.send(
                    RoomID(room_id),
                    f"🔴 Recording this call ({why_now}). " + await session.consent_text(),
                )
            elif role == "announce":
                await session.get_announcer()
        except Exception as e:
            if isinstance(e, RecordingCancelled) or not await self._call_on(room_id):
                # A call that ended at once (a misclick): nothing to follow, nothing to say.
                self.log.info("auto-%s in %s: the call ended before it began", role, room_id)
                return
            self.log.warning("auto-%s in %s failed: %s", role, room_id, e)
            await self.ctx.notices.send(RoomID(room_id), f"Auto-{role} failed: {why(e)}")

    async def _ended(self, session: RoomMedia) -> None:
        if session.starting:
            # Not begun yet: no summary of nothing. start_recording sees it gone, stops it
            # once its connection is made (not in the middle) and leaves the call.
            session.recorder = None
        elif session.recorder is not None:
            await session.stop_recording(reason_text="the call ended", speak=False)
        if session.announcer is not None:
            await session.close_announcer()
            await session.leave_if_idle()
            with contextlib.suppress(Exception):
                await self.sessions.shared.calls.leave(session.room_id)

    async def _call_on(self, room_id: str) -> bool:
        try:
            await self.sessions.shared.calls.require_call(room_id)
        except Exception:
            return False
        return True

    async def record_scheduled(self, room_id: str, title: str, duration_s: int) -> None:
        """A schedule with --record reached its start: record the call if one is on, else the
        call that starts within the schedule's duration (the bot never starts a call alone)."""
        session = self.sessions.session(room_id)
        if session.recorder is not None:
            return
        calls = self.sessions.shared.calls
        call = (await calls.room(room_id)).call()
        if call is None or not any(u != self.ctx.user_id for u in call.user_ids()):
            window_s = max(duration_s, 30 * 60)
            session.armed_until_ms = int(time.time() * 1000) + window_s * 1000
            return
        try:
            await session.start_recording()
        except MediaError as e:
            await self.ctx.notices.send(
                RoomID(room_id), f"The scheduled recording failed: {why(e)}"
            )
            return
        await self.ctx.notices.send(
            RoomID(room_id),
            "🔴 Recording this call (a schedule asked for it). " + await session.consent_text(),
        )
