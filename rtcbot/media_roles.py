"""The bot in a call's media: recorder and announcer per room, tokens, consent, results.

Tokens: minted locally with least privilege when a LiveKit API secret is configured, else from
the MatrixRTC authorization service (OpenID → /get_token, /sfu/get). Whenever the bot is in
the SFU it also publishes its call membership, so clients show it in the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from livekit import rtc
from mautrix.api import Method
from mautrix.api import Path as ApiPath
from mautrix.types import (
    AudioInfo,
    EventType,
    MediaMessageEventContent,
    MessageType,
    PowerLevelStateEventContent,
    RoomID,
    StateEvent,
    UserID,
)
from mautrix.util import background_task

from .media.announcer import Announcer
from .media.participant import Participant, SfuConnectError
from .media.recorder import Recorder, RecordingResult
from .media.tokens import AuthServiceClient, SfuAccess, SfuAuthError, mint_local_token
from .media.tts import available_engine
from .rtc.identity import livekit_room_alias
from .rtc.session import CallEnded, CallStarted

if TYPE_CHECKING:
    from .bot import RtcBot

ROLES = ("record", "announce")


class MediaError(Exception):
    """A sentence for the room."""


def _fmt_s(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    return f"{whole // 60} min {whole % 60:02d} s"


class MediaRoles:
    def __init__(self, bot: RtcBot) -> None:
        self.bot = bot
        self.log = logging.getLogger("rtcbot.media")
        self.recorders: dict[str, Recorder] = {}
        self.announcers: dict[str, Announcer] = {}
        self.recording_by: dict[str, str] = {}
        # Rooms where the recording put the bot into the call (so it leaves with it).
        self.joined_for_recording: set[str] = set()
        self._auto_cache: dict[str, str | None] = {}
        self._auth = AuthServiceClient(bot.http)
        self._cleanup: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._cleanup = asyncio.ensure_future(self._retention_loop())

    async def stop(self) -> None:
        if self._cleanup:
            self._cleanup.cancel()
        for room_id in list(self.recorders):
            with contextlib.suppress(Exception):
                await self.stop_recording(room_id, reason_text="the bot is shutting down")
        for room_id in list(self.announcers):
            await self._close_announcer(room_id)

    # -- tokens ------------------------------------------------------------------------------
    def _identity(self, role: str) -> str:
        base = f"{self.bot.client.mxid}:{self.bot.client.device_id or 'RTCBOT'}"
        return base if role == "recorder" else f"{base}:{role}"

    async def access(self, room_id: str, role: str) -> SfuAccess:
        lk = self.bot.settings.livekit
        if lk.api_secret:
            return mint_local_token(
                lk,
                livekit_room_alias(room_id),
                self._identity(role),
                "recorder" if role == "recorder" else "announcer",
                name=f"rtcbot {role}",
            )
        service = await self.bot.transport_url() or await self._members_transport(room_id)
        if not service:
            raise MediaError(
                "I don't know this call's LiveKit service: the homeserver advertises no "
                "MatrixRTC transport, and livekit.service_url / livekit.api_secret are not set."
            )
        openid = await self.bot.client.api.request(
            Method.POST,
            ApiPath.v3.user[self.bot.client.mxid].openid.request_token,
            {},
            sensitive=True,
        )
        device = self.bot.client.device_id or "RTCBOT"
        member_id = f"{role}-{uuid.uuid4().hex[:8]}"
        return await self._auth.get_access(
            service, room_id, openid, self.bot.client.mxid, device, member_id
        )

    async def _members_transport(self, room_id: str) -> str:
        """The call members' own advertised transport (foci_preferred / rtc_transports),
        oldest member first, as Element Call's "oldest_membership" selection does."""
        call = (await self.bot.calls.room(room_id)).call()
        if call is None:
            return ""
        for member in sorted(call.members.values(), key=lambda m: m.since_ms):
            for transport in member.transports:
                if transport.type == "livekit" and transport.livekit_service_url:
                    return transport.livekit_service_url.rstrip("/")
        return ""

    def _participant(self, room_id: str, role: str) -> Participant:
        async def get() -> SfuAccess:
            return await self.access(room_id, role)

        return Participant(get, logging.getLogger(f"rtcbot.media.{role}"), name=role)

    # -- permissions -------------------------------------------------------------------------
    async def may_record(self, room_id: str, user_id: str) -> tuple[bool, int, int]:
        levels = await self.bot.client.get_state_event(
            RoomID(room_id), EventType.ROOM_POWER_LEVELS
        )
        create = await self.bot.client.get_state_event(
            RoomID(room_id), EventType.ROOM_CREATE, format="event"
        )
        assert isinstance(levels, PowerLevelStateEventContent)
        level = levels.get_user_level(
            UserID(user_id), create=create if isinstance(create, StateEvent) else None
        )
        need = self.bot.settings.recording.min_power_level
        return level >= need, level, need

    # -- recording ---------------------------------------------------------------------------
    def _name_for(self, room_id: str) -> Any:
        def name_for(identity: str) -> tuple[str, str]:
            # /sfu/get identities are "@user:server:DEVICE"; hashed ones are opaque.
            if identity.startswith("@") and identity.count(":") >= 2:
                user, _, device = identity.rpartition(":")
                cached = self.bot.calls._names.get((room_id, user))
                return cached or user[1:].split(":")[0], device
            return "", ""

        return name_for

    def _ignore(self, p: rtc.RemoteParticipant) -> bool:
        # Our own announcer (consent notices) and non-human participants are not recorded.
        return p.identity.startswith(f"{self.bot.client.mxid}:") or (
            p.kind != rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD
        )

    async def start_recording(self, room_id: str, requester: str) -> Recorder:
        if room_id in self.recorders:
            raise MediaError("I am already recording this call. `!call record stop` ends it.")
        settings = self.bot.settings.recording
        directory = Path(settings.directory) / re.sub(r"[^A-Za-z0-9]+", "_", room_id).strip("_")
        prefix = time.strftime("%Y-%m-%d_%H%M%S")

        async def on_empty() -> None:
            await self.stop_recording(room_id, reason_text="everyone left the call")

        async def on_stopped(result: RecordingResult) -> None:
            if result.reason != "stopped":
                self.recorders.pop(room_id, None)
                await self._finish(room_id, result)

        participant = self._participant(room_id, "recorder")

        def on_lost(_message: str) -> None:
            background_task.create(
                self.bot.notices.send(
                    RoomID(room_id),
                    "⚠️ I lost the connection to the call's media server. The recording so far "
                    "is saved; I'll continue in a new part as soon as the server is back.",
                )
            )

        async def on_reconnected(_room: rtc.Room) -> None:
            await self.bot.notices.send(
                RoomID(room_id), "🔴 The media server is back: recording continues in a new part."
            )

        participant.on_lost.append(on_lost)
        participant.on_reconnected.append(on_reconnected)
        recorder = Recorder(
            participant,
            directory,
            prefix,
            name_for=self._name_for(room_id),
            log=self.log,
            max_seconds=settings.max_minutes * 60,
            on_empty=on_empty,
            on_stopped=on_stopped,
            ignore=self._ignore,
            exclude=lambda p: p.identity.startswith(f"{self.bot.client.mxid}:"),
        )
        self.recorders[room_id] = recorder
        self.recording_by[room_id] = requester
        try:
            await recorder.start()
        except (SfuConnectError, SfuAuthError) as e:
            self.recorders.pop(room_id, None)
            raise MediaError(
                f"I could not join the call's media: {getattr(e, 'message', e)}"
            ) from e
        except BaseException:
            self.recorders.pop(room_id, None)
            raise
        # In the SFU → in the call: publish the membership so clients show the bot.
        try:
            if room_id not in self.bot.calls.publishers:
                self.joined_for_recording.add(room_id)
            await self.bot.calls.join(room_id, "audio")
        except Exception as e:
            self.log.warning("recording in %s without call membership: %s", room_id, e)
        if settings.spoken_consent:
            background_task.create(self._speak(room_id, "This call is now being recorded."))
        return recorder

    async def stop_recording(self, room_id: str, reason_text: str = "") -> RecordingResult | None:
        recorder = self.recorders.pop(room_id, None)
        if recorder is None:
            return None
        if self.bot.settings.recording.spoken_consent:
            with contextlib.suppress(Exception):
                await self._speak(room_id, "The recording has stopped.")
        result = await recorder.stop()
        await self._finish(room_id, result, reason_text)
        return result

    async def _finish(self, room_id: str, result: RecordingResult, reason_text: str = "") -> None:
        if room_id in self.joined_for_recording:
            self.joined_for_recording.discard(room_id)
            with contextlib.suppress(Exception):
                await self.bot.calls.leave(room_id)
        await self._close_announcer(room_id)
        why = {
            "max_duration": "it reached the maximum length",
            "sfu_lost": "the media server was unreachable for too long",
            "room_closed": "the call's media room was closed",
        }.get(result.reason, reason_text)
        people = [f"{s.display_name} {_fmt_s(s.speaking_seconds)}" for s in result.speakers]
        lines = [
            f"⏹️ Recording stopped{f' ({why})' if why else ''} after "
            f"{_fmt_s(result.duration_ms / 1000)}"
            + (
                f", in {result.segments} parts (the media server was lost in between)"
                if result.segments > 1
                else ""
            )
            + ".",
            "Who spoke: " + (", ".join(people) if people else "nobody"),
        ]
        limit = self.bot.settings.recording.max_upload_mb * 1024 * 1024
        if result.files and result.total_bytes <= limit:
            await self.bot.notices.send(RoomID(room_id), "\n".join(lines))
            for f in sorted(
                result.files, key=lambda f: (f.kind != "mix", f.segment, f.display_name)
            ):
                await self._upload(room_id, f)
            if self.bot.settings.recording.retention_days == 0:
                for f in result.files:
                    f.path.unlink(missing_ok=True)
        else:
            where = result.files[0].path.parent if result.files else "nowhere"
            lines.append(
                f"The files ({result.total_bytes / 1e6:.1f} MB) are larger than the upload limit "
                f"and stay on the bot's disk in `{where}` for "
                f"{self.bot.settings.recording.retention_days} days."
            )
            await self.bot.notices.send(RoomID(room_id), "\n".join(lines))
        if result.errors:
            self.log.warning("recording in %s had errors: %s", room_id, result.errors)

    async def _upload(self, room_id: str, f: Any) -> None:
        data = f.path.read_bytes()
        mxc = await self.bot.client.upload_media(data, mime_type="audio/ogg", filename=f.path.name)
        label = "Mix of everyone" if f.kind == "mix" else f"{f.display_name} ({f.device})"
        content = MediaMessageEventContent(
            msgtype=MessageType.AUDIO,
            body=f"{label} — {f.path.name}",
            url=mxc,
            info=AudioInfo(mimetype="audio/ogg", size=len(data), duration=f.duration_ms),
        )
        content["filename"] = f.path.name
        await self.bot.client.send_message(RoomID(room_id), content)

    async def _retention_loop(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                self._apply_retention()
            await asyncio.sleep(3600)

    def _apply_retention(self) -> None:
        days = self.bot.settings.recording.retention_days
        root = Path(self.bot.settings.recording.directory)
        if not root.is_dir():
            return
        cutoff = time.time() - days * 86400
        for path in root.glob("*/*"):
            if path.stat().st_mtime < cutoff and not any(
                r.directory == path.parent for r in self.recorders.values()
            ):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)

    # -- announcer ---------------------------------------------------------------------------
    async def announcer(self, room_id: str) -> Announcer:
        ann = self.announcers.get(room_id)
        if ann is None or ann._closed:
            ann = Announcer(
                self._participant(room_id, "announcer"),
                available_engine(),
                self.log,
                join_chime=self.bot.settings.announcer.join_chime,
            )
            try:
                await ann.connect()
            except (SfuConnectError, SfuAuthError) as e:
                raise MediaError(
                    f"I could not join the call's media: {getattr(e, 'message', e)}"
                ) from e
            self.announcers[room_id] = ann
        return ann

    async def announce(self, room_id: str, text: str) -> float:
        ann = await self.announcer(room_id)
        return await ann.say(text)

    async def _speak(self, room_id: str, text: str) -> None:
        try:
            await self.announce(room_id, text)
        except Exception as e:
            self.log.warning("spoken notice in %s failed: %s", room_id, e)

    async def _close_announcer(self, room_id: str) -> None:
        ann = self.announcers.pop(room_id, None)
        if ann is not None:
            with contextlib.suppress(Exception):
                await ann.close()

    # -- auto-follow -------------------------------------------------------------------------
    async def load_auto(self, room_id: str) -> str | None:
        role = await self.bot.db.get_auto_role(room_id)
        self._auto_cache[room_id] = role
        return role

    async def on_call_event(self, room_id: str, ev: Any) -> None:
        """Auto-follow: join in the room's role when people start a call, leave when it ends."""
        role = await self.load_auto(room_id)
        if role is None:
            return
        if isinstance(ev, CallStarted) and ev.started_by != self.bot.client.mxid:
            try:
                if role == "record" and room_id not in self.recorders:
                    await self.start_recording(room_id, self.bot.client.mxid)
                    await self.bot.notices.send(
                        RoomID(room_id),
                        "🔴 Recording this call (auto-record is on here). Everyone's audio is "
                        "recorded; `!call auto off` turns it off.",
                    )
                elif role == "announce":
                    await self.announcer(room_id)
                    await self.bot.calls.join(room_id, "audio")
            except Exception as e:
                await self.bot.notices.send(RoomID(room_id), f"Auto-{role} failed: {e}")
        elif isinstance(ev, CallEnded):
            if room_id in self.recorders:
                await self.stop_recording(room_id, reason_text="the call ended")
            if room_id in self.announcers:
                await self._close_announcer(room_id)
                with contextlib.suppress(Exception):
                    await self.bot.calls.leave(room_id)

    def status_json(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for room_id, rec in self.recorders.items():
            st = rec.status()
            out.append(
                {
                    "room_id": room_id,
                    "state": st.state,
                    "seconds": round(st.duration_s, 1),
                    "participants": st.participants,
                    "bytes": st.bytes_written,
                    "dropped_frames": st.dropped_frames,
                }
            )
        return out
