"""The bot in one room's call media: ONE object per room owns its participant, recorder,
announcer, start state and file prefix, and answers the recorder's questions (RecorderHooks).

The bot is ONE LiveKit participant per call (media/presence.py), whatever it does there: its
identity is that of its own call membership (`member_identity`: `@bot:server:DEVICE`), so
clients such as Element Call show its tile ("● Recording 01:23" / "Announcer") and play its
voice. Its call membership is published before it connects, so a client matches the
participant from its first packet on; the bot leaves the call again when its last role ends
if a role put it there. What all rooms share (tokens, other SFUs, recovery, retention, who
follows a recording) is `MediaShared`, handed over by the registry (recording/sessions.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from livekit import rtc
from mautrix.types import EventID, RoomID

from ..calls.identities import identity_owner
from ..context import BotContext
from ..matrix.publisher import State
from ..media.announcer import Announcer
from ..media.connect_errors import SfuConnectError
from ..media.failure_sentences import room_sentence
from ..media.heap import release_memory
from ..media.presence import CallKeyring, CallPresence
from ..media.recorder import Recorder, RecordingResult
from ..media.recorder_hooks import RecorderLimits
from ..media.tokens import Roles, SfuAccess, SfuAuthError
from ..media.tts import available_engine
from ..rtc.identity import is_hashed_identity
from .consent import posted_notice, room_consent, spoken_notice
from .disk import room_folder
from .errors import MediaError, RecordingCancelled
from .limits import DiskFloor, recording_refusal
from .posts import drop_posted_files, post_recording
from .shared import MediaShared

# Between removing the bot's membership and ending its media at a recording's stop: clients
# drop the bot's tile instead of showing it "Waiting for media…" (a sync round trip).
CLIENTS_SEE_LEAVE_S = 1.0


@dataclass
class RoomMedia:
    room_id: str
    shared: MediaShared
    presence: CallPresence | None = None
    recorder: Recorder | None = None
    announcer: Announcer | None = None
    joined_for_media: bool = False  # a media role put the bot into the call (it leaves with it)
    starting: bool = False  # the recording is being started (entering the call, connecting)
    armed_until_ms: int = 0  # a schedule asked to record the next call, until then
    prefix: str | None = None  # the running recording's file prefix (for the crash recovery)
    # The opt-outs' question for the running recording (asked on every frame); a new one per
    # recording, which also starts that recording's list of who was left out.
    _withheld: Callable[[str], bool] | None = None
    _announcer_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def ctx(self) -> BotContext:
        return self.shared.ctx

    @property
    def command(self) -> str:
        return f"!{self.ctx.settings().command}"

    # -- the bot's participant ---------------------------------------------------------------
    def participant(self) -> CallPresence:
        if self.presence is None:
            room_id, shared = self.room_id, self.shared

            async def access_for(roles: Roles, name: str) -> SfuAccess:
                return await shared.access.access(room_id, roles, name)

            self.presence = CallPresence(
                access_for,
                shared.log.getChild("participant"),
                base_name=self.ctx.user_id[1:].split(":")[0],
                update_grants=shared.access.update_grants,
                keys=CallKeyring.of(shared.keyrings, room_id) if shared.keyrings else None,
            )
            self.presence.participant.on_lost.add(lambda _m: self._sfu_lost())
            self.presence.participant.on_reconnected.add(lambda _r: self._sfu_back())
        return self.presence

    def _sfu_lost(self) -> None:
        if self.recorder is not None:
            self.ctx.tasks.spawn(
                self.ctx.notices.send(
                    RoomID(self.room_id),
                    "⚠️ I lost the connection to the call's media server. The recording so far "
                    "is saved; I'll continue in a new part as soon as the server is back.",
                ),
                "sfu-lost-notice",
            )

    async def _sfu_back(self) -> None:
        if self.recorder is not None:
            await self.ctx.notices.send(
                RoomID(self.room_id),
                "🔴 The media server is back: recording continues in a new part.",
            )

    async def enter_call(self) -> None:
        """Publish the bot's call membership before its participant connects, so clients
        match the participant (show its tile, play its voice) from its first packet."""
        calls = self.shared.calls
        pub = calls.publisher(self.room_id)
        if pub is not None and pub.state == State.JOINED:
            return
        try:
            if pub is None:
                self.joined_for_media = True
            await calls.join(self.room_id, "audio", remember=False)
        except Exception as e:
            self.shared.log.warning(
                "in the media of %s without a call membership: %s", self.room_id, e
            )

    async def leave_if_idle(self) -> None:
        """The last role ended: forget the participant, leave the call if a role joined it."""
        if self.presence is not None:
            if not self.presence.idle:
                return
            self.presence = None
        await self.leave_call_for_media()

    async def leave_call_for_media(self) -> bool:
        """True if the bot's membership was removed (it was there for a media role)."""
        if not self.joined_for_media:
            return False
        self.joined_for_media = False
        with contextlib.suppress(Exception):
            return await self.shared.calls.leave(self.room_id)
        return False

    async def close(self) -> None:
        """The bot is no longer in the room (or stops): the participant goes, unsaid."""
        await self.close_announcer()
        presence, self.presence = self.presence, None
        if presence is not None:
            with contextlib.suppress(Exception):
                await presence.close()

    # -- RecorderHooks: what the recorder asks of this room ----------------------------------
    def owner(self, identity: str) -> tuple[str, str] | None:
        return identity_owner(self.shared.calls, self.room_id, identity)

    def name_for(self, identity: str) -> tuple[str, str] | None:
        owner = self.owner(identity)
        if owner is None:
            return "", ""
        user, device = owner
        known = self.shared.calls.known_name(self.room_id, user)
        return known or user[1:].split(":")[0], device

    async def resolve_name(self, identity: str) -> tuple[str, str] | None:
        # A matrix_2_0 member's sticky membership can reach the bot after its media does;
        # the recorder bounds this wait (resolve_timeout) and buffers the audio meanwhile.
        owner = self.owner(identity)
        while owner is None and is_hashed_identity(identity):
            await asyncio.sleep(0.2)
            owner = self.owner(identity)
        if owner is None:
            return None
        user, device = owner
        return await self.shared.calls.display_name(self.room_id, user), device

    def ignores(self, p: rtc.RemoteParticipant) -> bool:
        # Our own announcer (consent notices) and non-human participants are not recorded.
        return self.excludes(p) or p.kind != rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD

    def excludes(self, p: rtc.RemoteParticipant) -> bool:
        return p.identity.startswith(f"{self.ctx.user_id}:")

    def withheld(self, identity: str) -> bool:
        return self._withheld is not None and self._withheld(identity)

    async def on_empty(self) -> None:
        # The SFU room is empty; the call's memberships decide whether people left or are
        # reconnecting (Element Call on a busy machine): the call's end stops it then.
        if await self.shared.calls.has_people(self.room_id):
            self.shared.log.info("%s: nobody on the SFU, but people are in the call", self.room_id)
            return
        await self.stop_recording(reason_text="everyone left the call", speak=False)

    async def on_stopped(self, result: RecordingResult) -> None:
        if result.reason != "stopped":
            self.recorder = None
            await self._finish(result)

    # -- recording ---------------------------------------------------------------------------
    async def start_recording(self) -> Recorder:
        if self.recorder is not None:
            raise MediaError(
                f"I am already recording this call. `{self.command} record stop` ends it."
            )
        shared, room_id = self.shared, self.room_id
        await shared.require_call(room_id)
        settings = self.ctx.settings().recording
        refusal = recording_refusal(shared.recordings_running(), settings)
        if refusal is not None:
            raise MediaError(refusal)
        directory = Path(settings.directory) / room_folder(room_id)
        prefix = time.strftime("%Y-%m-%d_%H%M%S")
        self._withheld = shared.withheld_for(room_id) if shared.withheld_for else None
        recorder = Recorder(
            self.participant().role("recorder"),
            directory,
            prefix,
            self,
            limits=RecorderLimits(settings.max_minutes * 60, settings.max_tracks),
            log=shared.log,
            taps=[t for make in shared.tap_factories if (t := make(room_id)) is not None],
        )
        self.recorder, self.starting = recorder, True
        try:
            await self.enter_call()
            if self.recorder is recorder:
                await recorder.start()
        except BaseException as e:
            self.recorder = None
            await shared.tell_ended(room_id)  # what its taps started ends too
            await self.leave_if_idle()
            if isinstance(e, SfuConnectError | SfuAuthError):
                shared.log.warning("joining the media of %s failed: %s", room_id, e)
                raise MediaError(f"I could not join the call's media: {room_sentence(e)}.") from e
            raise
        finally:
            self.starting = False
        if self.recorder is not recorder:  # the call ended meanwhile
            if recorder.state != "idle":
                await recorder.stop()
            await shared.tell_ended(room_id)
            await self.leave_if_idle()
            raise RecordingCancelled("The call ended before the recording started.")
        shared.other_sfus.follow(room_id, recorder)
        floor = DiskFloor(directory, lambda: self.ctx.settings().recording, shared.log)
        self.ctx.tasks.spawn(floor.watch(recorder), "disk-floor")
        try:
            await shared.recovery.started(room_id, directory, prefix)
            self.prefix = prefix
        except Exception:
            shared.log.exception("could not note the recording in %s for crash recovery", room_id)
        if settings.spoken_consent:
            self.ctx.tasks.spawn(self.speak_consent(), "consent-notice")
        return recorder

    async def stop_recording(
        self, reason_text: str = "", speak: bool = True
    ) -> RecordingResult | None:
        recorder, self.recorder = self.recorder, None
        if recorder is None:
            return None
        if speak and self.ctx.settings().recording.spoken_consent:
            with contextlib.suppress(Exception):
                await self.speak("The recording has stopped.")
        # The membership goes before the recorder stops: stopping first unpublishes the status
        # picture while the membership stays, and Element Call shows "Waiting for media…" for
        # as long as the gap lasts (seen on a loaded machine).
        if await self.leave_call_for_media():
            # ... and clients get a moment to see it gone before the media changes: a busy
            # Element Call (0.25 in a CI run) applied the track change first all the same.
            await asyncio.sleep(CLIENTS_SEE_LEAVE_S)
        result = await recorder.stop()
        await self._finish(result, reason_text)
        return result

    async def recording_over(self) -> None:
        prefix, self.prefix = self.prefix, None
        if prefix is not None:
            try:
                await self.shared.recovery.finished(self.room_id, prefix)
            except Exception:
                self.shared.log.exception(
                    "could not note the end of the recording in %s", self.room_id
                )

    async def _finish(self, result: RecordingResult, reason_text: str = "") -> None:
        shared, room_id = self.shared, self.room_id
        if self.presence is None or self.presence.roles <= {"announcer"}:
            # The membership goes before the participant: clients drop the bot's tile at
            # once (the other way round, Element Call shows "Waiting for media…" in between).
            await self.leave_call_for_media()
        await self.close_announcer()
        await self.leave_if_idle()
        await shared.tell_ended(room_id)
        shared.retention.hold(f.path for f in result.files)  # until transcribed (_after_posted)
        notes = await shared.summary_notes(room_id) if shared.summary_notes else []
        notes += await shared.other_sfus.summary_notes(room_id)
        ended = self.ctx.metrics.recordings_ended
        try:
            summary = await post_recording(self.ctx, RoomID(room_id), result, reason_text, notes)
        except BaseException:
            ended.labels("failed").inc()
            shared.retention.release(f.path for f in result.files)
            raise
        ended.labels("posted").inc()
        self.ctx.tasks.spawn(self._after_posted(result, summary), "recording-posted")
        if result.errors:
            shared.log.warning("recording in %s had errors: %s", room_id, result.errors)
        # Posted (or kept and said where): only now is it no longer the recovery's business.
        await self.recording_over()

    async def _after_posted(self, result: RecordingResult, summary: EventID) -> None:
        """What reads the files (the transcript) first, then a retention of 0 deletes them."""
        try:
            await self.shared.recording_posted.emit(RoomID(self.room_id), result, summary)
            drop_posted_files(self.ctx, result)
        finally:
            self.shared.retention.release(f.path for f in result.files)
            release_memory()  # the recording's objects and buffers, cycles and arenas

    # -- announcer ---------------------------------------------------------------------------
    async def get_announcer(self) -> Announcer:
        async with self._announcer_lock:
            ann = self.announcer
            if ann is not None and ann.closed:  # its connection ended for good
                await self.close_announcer()
                ann = None
            if ann is None:
                await self.enter_call()
                ann = Announcer(
                    self.participant().role("announcer"),
                    available_engine(),
                    self.shared.log,
                    join_chime=self.ctx.settings().announcer.join_chime,
                )
                try:
                    await ann.connect()
                except BaseException as e:
                    await self.leave_if_idle()
                    if isinstance(e, SfuConnectError | SfuAuthError):
                        self.shared.log.warning(
                            "joining the media of %s failed: %s", self.room_id, e
                        )
                        raise MediaError(
                            f"I could not join the call's media: {room_sentence(e)}."
                        ) from e
                    raise
                self.announcer = ann
            return ann

    async def announce(self, text: str) -> float:
        await self.shared.require_call(self.room_id)
        return await (await self.get_announcer()).say(text)

    async def speak(self, text: str) -> None:
        try:
            await self.announce(text)
        except Exception as e:
            self.shared.log.warning("spoken notice in %s failed: %s", self.room_id, e)

    async def close_announcer(self) -> None:
        ann, self.announcer = self.announcer, None
        if ann is not None:
            with contextlib.suppress(Exception):
                await ann.close()

    async def end_roles(self, reason: str) -> None:
        """`!call leave`: the bot leaves the call, so its media roles end too (a recording is
        finished and posted as usual)."""
        if self.recorder is not None:
            await self.stop_recording(reason_text=reason, speak=False)
        await self.close_announcer()
        await self.leave_if_idle()

    # -- consent ------------------------------------------------------------------------------
    async def consent_text(self) -> str:
        """The posted consent notice (recording/consent.py): what is recorded, transcribed,
        captioned, and how to opt out."""
        settings = self.ctx.settings()
        consent = await room_consent(self.ctx, self.room_id)
        return posted_notice(settings.command, consent, settings.permissions["record_optout"] <= 0)

    async def speak_consent(self) -> None:
        consent = await room_consent(self.ctx, self.room_id)
        await self.speak(spoken_notice(self.ctx.settings().command, consent))

    def status_json(self) -> dict[str, object] | None:
        if self.recorder is None:
            return None
        st = self.recorder.status()
        return {
            "room_id": self.room_id,
            "state": st.state,
            "seconds": round(st.duration_s, 1),
            "participants": st.participants,
            "bytes": st.bytes_written,
            "dropped_frames": st.dropped_frames,
        }
