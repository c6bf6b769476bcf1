"""The media sessions of every room (recording/session.py), and what concerns all of them:
start and stop of the instance, a room the bot lost, a LiveKit room the server closed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from livekit import rtc

from ..context import BotContext
from ..media.frame_keys import FrameKeys
from ..media.presence import Keyrings
from ..media.recorder import Recorder, RecordingResult
from ..ports import CallMembership, HomeTransport
from ..rtc.identity import livekit_room_alias
from .access import MediaAccess
from .disk import MB, free_mb
from .recovery import RecordingRecovery
from .retention import Retention
from .session import RoomMedia
from .sfus import RecordingSfus
from .shared import MediaShared

ROLES = ("record", "announce")


class MediaSessions:
    def __init__(
        self,
        ctx: BotContext,
        calls: CallMembership,
        home_transport: HomeTransport,
        *,
        keyrings: Keyrings | None = None,
        withheld_for: Callable[[str], Callable[[str], bool]] | None = None,
        summary_notes: Callable[[str], Awaitable[list[str]]] | None = None,
    ) -> None:
        self.ctx = ctx
        self.log = ctx.logger("media")
        self.rooms: dict[str, RoomMedia] = {}
        access = MediaAccess(ctx, calls, home_transport, self._livekit_url)
        recovery = RecordingRecovery(ctx)
        self.shared = MediaShared(
            ctx,
            calls,
            self.log,
            access,
            recovery,
            Retention(
                lambda: ctx.settings().recording,
                running=lambda: [(r.directory, r.prefix) for r in self.recorders()],
                listed=recovery.listed,
                log=self.log.getChild("retention"),
            ),
            # Multi-SFU calls: the recorder also listens on each other SFU where people publish.
            RecordingSfus(
                ctx,
                calls,
                home_service=access.home_key,
                home_livekit=self._livekit_url,
                access_at=access.foreign_access,
                trusted=access.trusted_sfus,
                frame_keys=self._frame_keys,
                log=self.log.getChild("sfus"),
            ),
            recordings_running=lambda: len(self.recorders()),
            keyrings=keyrings,
            withheld_for=withheld_for,
            summary_notes=summary_notes,
        )

    def session(self, room_id: str) -> RoomMedia:
        found = self.rooms.get(room_id)
        if found is None:
            found = self.rooms[room_id] = RoomMedia(room_id, self.shared)
        return found

    def recorders(self) -> list[Recorder]:
        return [s.recorder for s in self.rooms.values() if s.recorder is not None]

    def recorder(self, room_id: str) -> Recorder | None:
        found = self.rooms.get(room_id)
        return found.recorder if found is not None else None

    def _with_presence(self, room_id: str) -> RoomMedia | None:
        found = self.rooms.get(room_id)
        return found if found is not None and found.presence is not None else None

    def sfu_room(self, room_id: str) -> rtc.Room | None:
        """The LiveKit room the bot's participant is connected to there, if any."""
        found = self._with_presence(room_id)
        return found.presence.participant.room if found and found.presence else None

    def _frame_keys(self, room_id: str) -> FrameKeys | None:
        found = self._with_presence(room_id)
        return found.presence.frame_keys if found and found.presence else None

    def _livekit_url(self, room_id: str) -> str | None:
        found = self._with_presence(room_id)
        access = found.presence.participant.access if found and found.presence else None
        return access.url if access is not None else None

    # -- the instance ------------------------------------------------------------------------
    async def start(self) -> None:
        # Recordings a crash cut off are posted now (nothing recorded is lost); the retention
        # starts after that, so it never deletes what the recovery is about to post.
        self.shared.retention.start(self.shared.recovery.recover())

    async def stop(self) -> None:
        await self.shared.retention.stop()
        for session in list(self.rooms.values()):
            try:
                await session.stop_recording(reason_text="I am shutting down")
            except Exception:
                self.log.exception(
                    "finishing the recording in %s at shutdown failed", session.room_id
                )
        sessions = list(self.rooms.values())
        self.rooms.clear()
        for session in sessions:
            await session.close()
        await self.shared.access.close()

    async def forget_room(self, room_id: str) -> None:
        """The bot was kicked, banned or left: end what it did there. The room cannot be told
        any more, so a recording's files stay on disk (the log says where)."""
        await self.shared.other_sfus.summary_notes(room_id)  # no summary will be posted
        session = self.rooms.pop(room_id, None)
        if session is None:
            return
        recorder, session.recorder = session.recorder, None
        if recorder is not None:
            result = await recorder.stop()
            await self.shared.tell_ended(room_id)
            await session.recording_over()
            where = result.files[0].path.parent if result.files else "nowhere (no audio)"
            self.log.warning(
                "removed from %s while recording: %d files kept in %s",
                room_id,
                len(result.files),
                where,
            )
        await session.close()

    async def on_sfu_room_finished(self, livekit_room: str) -> list[str]:
        """LiveKit says (signed webhook) that a media room is finished: whatever the bot still
        does there ends, and the room is told. Returns the Matrix rooms concerned."""
        rooms = [
            s
            for r, s in list(self.rooms.items())
            if livekit_room_alias(r) == livekit_room
            and (s.recorder or s.announcer or s.presence) is not None
        ]
        for session in rooms:
            self.log.info("LiveKit finished the media room of %s", session.room_id)
            # Not spoken: joining the finished room would create it again.
            await session.stop_recording(
                reason_text="the call's media room was closed on the server", speak=False
            )
            await session.close_announcer()
            await session.leave_if_idle()
        return [s.room_id for s in rooms]

    # -- what commands and schedules ask ----------------------------------------------------
    async def start_recording(self, room_id: str) -> Recorder:
        return await self.session(room_id).start_recording()

    async def stop_recording(
        self, room_id: str, reason_text: str = "", speak: bool = True
    ) -> RecordingResult | None:
        found = self.rooms.get(room_id)
        return await found.stop_recording(reason_text, speak) if found is not None else None

    async def announce(self, room_id: str, text: str) -> float:
        return await self.session(room_id).announce(text)

    async def consent_text(self, room_id: str) -> str:
        return await self.session(room_id).consent_text()

    async def end_roles(self, room_id: str, reason: str) -> None:
        found = self.rooms.get(room_id)
        if found is not None:
            await found.end_roles(reason)

    def live_metrics(self) -> dict[str, float]:
        settings = self.ctx.settings().recording
        try:
            free = free_mb(Path(settings.directory)) * MB
        except OSError:
            free = 0.0  # unreadable counts as full, as for the floor itself
        return {
            "rtcbot_recordings_active": len(self.recorders()),
            "rtcbot_recording_disk_free_bytes": free,
            "rtcbot_recording_disk_floor_bytes": float(settings.min_free_mb * MB),
        }

    def status_json(self) -> list[dict[str, object]]:
        return [st for s in self.rooms.values() if (st := s.status_json()) is not None]
