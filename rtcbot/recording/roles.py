"""The bot in a call's media: recorder and announcer per room, tokens, consent, results.

The bot is ONE LiveKit participant per call (media/presence.py), whatever it does there: its
identity is that of its own call membership (`member_identity`: `@bot:server:DEVICE`), so
clients such as Element Call show its tile ("● Recording 01:23" / "Announcer") and play its
voice. Its call membership is published before it connects, so a client matches the
participant from its first packet on; the bot leaves the call again when its last role ends
if a role put it there.

Tokens: minted locally with the least privilege of the roles held when a LiveKit API secret is
configured (a role added later widens the live participant's permissions, one that ends
narrows them), else from the MatrixRTC authorization service (OpenID → /sfu/get for the
bot's state-event membership, /get_token if that is gone), a trusted one only
(recording/trusted_services.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from livekit import rtc
from mautrix.api import Method
from mautrix.api import Path as ApiPath
from mautrix.types import EventID, RoomID

from ..context import BotContext
from ..matrix.crypto_status import crypto_refusal
from ..matrix.publisher import PublishError, State
from ..media.announcer import Announcer
from ..media.failure_sentences import room_sentence
from ..media.participant import SfuConnectError
from ..media.presence import CallKeyring, CallPresence, Keyrings
from ..media.recorder import AudioTap, Recorder, RecordingResult
from ..media.tokens import (
    AuthServiceClient,
    Roles,
    SfuAccess,
    SfuAuthError,
    mint_local_token,
    update_live_grants,
)
from ..media.tts import available_engine
from ..ports import CallEvent, CallMembership, TransportUrl
from ..rtc.identity import is_hashed_identity, livekit_room_alias, member_identity
from ..rtc.session import CallEnded, CallStarted
from .consent import posted_notice, room_consent, spoken_notice
from .disk import room_folder
from .limits import DiskFloor, recording_refusal
from .posts import drop_posted_files, post_recording
from .recovery import RecordingRecovery
from .retention import Retention
from .sfus import RecordingSfus
from .trusted_services import TrustedServices

ROLES = ("record", "announce")
# Between removing the bot's membership and ending its media at a recording's stop: clients
# drop the bot's tile instead of showing it "Waiting for media…" (a sync round trip).
CLIENTS_SEE_LEAVE_S = 1.0
# What else follows a recording (captions, the call card, transcripts, opt-outs): given the
# room when a recorder is made, each may hand it an audio tap; told when it has ended (before
# the summary is posted) and when the summary is posted (its event, None if not posted).
TapFactory = Callable[[str], AudioTap | None]
RecordingEnded = Callable[[str], Awaitable[None]]
RecordingPosted = Callable[[RoomID, RecordingResult, EventID], Coroutine[Any, Any, None]]


class MediaError(Exception):
    """A sentence for the room."""


class RecordingCancelled(MediaError):
    """The call ended while its recording was being started (nothing of it is posted)."""


def _why(e: Exception) -> str:
    """An error for the room: our own sentences as they are; anything else only by its type
    (its text may quote a server: never relayed; the caller logs it)."""
    if isinstance(e, MediaError | PublishError):
        return str(e)
    return f"an unexpected {type(e).__name__} (the log says more)"


class MediaRoles:
    def __init__(
        self,
        ctx: BotContext,
        calls: CallMembership,
        transport_url: TransportUrl,
        keyrings: Keyrings | None = None,
    ) -> None:
        self.ctx = ctx
        # Encrypted calls: the frame keys of each call the bot's participant is in.
        self.keyrings = keyrings
        self.calls = calls
        self.transport_url = transport_url
        self.log = ctx.logger("media")
        self.recorders: dict[str, Recorder] = {}
        self.announcers: dict[str, Announcer] = {}
        # The bot's one LiveKit participant per call, shared by the roles above.
        self.presences: dict[str, CallPresence] = {}
        # Rooms where a media role put the bot into the call (so it leaves with the last one).
        self.joined_for_media: set[str] = set()
        self._announcer_locks: dict[str, asyncio.Lock] = {}
        # Rooms where a schedule asked to record the next call, until (ms).
        self.armed_until: dict[str, int] = {}
        # Rooms whose recording is being started (the bot entering the call, connecting).
        self._starting: set[str] = set()
        self._auth = AuthServiceClient(ctx.http, log=self.log.getChild("auth_client"))
        # Where the bot's token may go; other SFUs' services through their own guarded pool.
        self.trust = TrustedServices(ctx, transport_url, self.log.getChild("other_auth_client"))
        # Multi-SFU calls: the recorder also listens on each other SFU where people publish.
        self.recovery = RecordingRecovery(ctx)
        self._prefixes: dict[str, str] = {}  # room → the running recording's file prefix
        self.other_sfus = RecordingSfus(
            ctx,
            calls,
            home_service=self._home_service,
            home_livekit=self._home_livekit,
            access_at=self._foreign_access,
            trusted=self.trust.urls,
            frame_keys=lambda r: p.frame_keys if (p := self.presences.get(r)) else None,
            log=self.log.getChild("sfus"),
        )
        self.retention = Retention(
            lambda: ctx.settings().recording,
            running=lambda: [(r.directory, r.prefix) for r in self.recorders.values()],
            listed=self.recovery.listed,
            log=self.log.getChild("retention"),
        )
        self.tap_factories: list[TapFactory] = []
        self.on_recording_ended: list[RecordingEnded] = []
        self.on_recording_posted: list[RecordingPosted] = []
        # Opt-outs (recording/optout.py): room → "is this LiveKit identity left out now?",
        # and the summary's lines about them.
        self.withheld_for: Callable[[str], Callable[[str], bool]] | None = None
        self.summary_notes: Callable[[str], Awaitable[list[str]]] | None = None

    async def start(self) -> None:
        # Recordings a crash cut off are posted now (nothing recorded is lost); the retention
        # starts after that, so it never deletes what the recovery is about to post.
        self.retention.start(self.recovery.recover())

    async def stop(self) -> None:
        await self.retention.stop()
        for room_id in list(self.recorders):
            try:
                await self.stop_recording(room_id, reason_text="the bot is shutting down")
            except Exception:
                self.log.exception("finishing the recording in %s at shutdown failed", room_id)
        for room_id in list(self.announcers):
            await self._close_announcer(room_id)
        presences = list(self.presences.values())
        self.presences.clear()
        for presence in presences:
            with contextlib.suppress(Exception):
                await presence.close()
        await self.trust.close()

    async def forget_room(self, room_id: str) -> None:
        """The bot was kicked, banned or left: end what it did there. The room cannot be told
        any more, so a recording's files stay on disk (the log says where)."""
        self.armed_until.pop(room_id, None)
        self.joined_for_media.discard(room_id)
        await self.other_sfus.summary_notes(room_id)  # no summary will be posted: drop them
        self._announcer_locks.pop(room_id, None)
        recorder = self.recorders.pop(room_id, None)
        if recorder is not None:
            result = await recorder.stop()
            await self._tell_ended(room_id)
            await self._recording_over(room_id)
            where = result.files[0].path.parent if result.files else "nowhere (no audio)"
            self.log.warning(
                "removed from %s while recording: %d files kept in %s",
                room_id,
                len(result.files),
                where,
            )
        await self._close_announcer(room_id)
        presence = self.presences.pop(room_id, None)
        if presence is not None:
            await presence.close()

    async def on_sfu_room_finished(self, livekit_room: str) -> list[str]:
        """LiveKit says (signed webhook) that a media room is finished: whatever the bot still
        does there ends, and the room is told. Returns the Matrix rooms concerned."""
        rooms = [
            r
            for r in {*self.recorders, *self.announcers, *self.presences}
            if livekit_room_alias(r) == livekit_room
        ]
        for room_id in rooms:
            self.log.info("LiveKit finished the media room of %s", room_id)
            if room_id in self.recorders:
                # Not spoken: joining the finished room would create it again.
                await self.stop_recording(
                    room_id,
                    reason_text="the call's media room was closed on the server",
                    speak=False,
                )
            await self._close_announcer(room_id)
            await self._leave_if_idle(room_id)
        return rooms

    def live_metrics(self) -> dict[str, float]:
        return {"rtcbot_recordings_active": len(self.recorders)}

    async def _require_call(self, room_id: str) -> None:
        try:
            await self.calls.require_call(room_id)
        except PublishError as e:
            raise MediaError(str(e)) from None

    # -- the bot's participant ---------------------------------------------------------------
    def identity(self) -> str:
        """The bot's LiveKit identity in every call: that of its (state-event) membership."""
        return member_identity(self.ctx.user_id, self.ctx.device_id)

    async def access(self, room_id: str, roles: Roles, name: str) -> SfuAccess:
        lk = self.ctx.settings().livekit
        if lk.api_secret:
            return mint_local_token(
                lk, livekit_room_alias(room_id), self.identity(), roles, name=name
            )
        service = await self._home_service(room_id)
        if not service:
            raise MediaError(
                "I don't know this call's LiveKit service: the homeserver advertises no "
                "MatrixRTC transport, livekit.service_url / livekit.api_secret are not set, "
                "and no call member's own service is in livekit.trusted_services."
            )
        return await self._service_access(service, room_id, await self.trust.client_for(service))

    async def _home_service(self, room_id: str) -> str:
        """The authorization service of the bot's own transport in this room's call."""
        own = await self.transport_url()
        return own or await self.trust.members_service((await self.calls.room(room_id)).call())

    async def _foreign_access(self, service: str, room_id: str) -> SfuAccess:
        """A token from another SFU's service: only a trusted one, through the guarded
        client (RecordingSfus checks first; this is the last gate before the token leaves)."""
        url = await self.trust.check(service)
        if url is None:
            raise SfuAuthError("unauthorised", None, "That service is not a trusted one.")
        return await self._service_access(url, room_id, self.trust.auth)

    def _home_livekit(self, room_id: str) -> str | None:
        presence = self.presences.get(room_id)
        access = presence.participant.access if presence is not None else None
        return access.url if access is not None else None

    async def _service_access(
        self, service: str, room_id: str, client: AuthServiceClient | None = None
    ) -> SfuAccess:
        """A token from that MatrixRTC authorization service, for the bot's membership."""
        openid = await self.ctx.client.api.request(
            Method.POST,
            ApiPath.v3.user[self.ctx.user_id].openid.request_token,
            {},
            sensitive=True,
        )
        # The bot's membership is a state event: /sfu/get gives its `user:device` identity.
        return await (client or self._auth).get_access(
            service,
            room_id,
            openid,
            self.ctx.user_id,
            self.ctx.device_id,
            self.identity(),
            prefer="sfu_get",
        )

    async def _update_grants(self, access: SfuAccess, roles: Roles, name: str) -> None:
        await update_live_grants(
            self.ctx.settings().livekit,
            access.room,
            access.identity,
            roles,
            name,
            session=self.ctx.http,
        )

    def _presence(self, room_id: str) -> CallPresence:
        presence = self.presences.get(room_id)
        if presence is None:

            async def access_for(roles: Roles, name: str) -> SfuAccess:
                return await self.access(room_id, roles, name)

            presence = CallPresence(
                access_for,
                self.log.getChild("participant"),
                base_name=self.ctx.user_id[1:].split(":")[0],
                update_grants=self._update_grants,
                keys=CallKeyring.of(self.keyrings, room_id) if self.keyrings else None,
            )
            presence.participant.on_lost.append(lambda _m: self._on_sfu_lost(room_id))
            presence.participant.on_reconnected.append(lambda _r: self._on_sfu_back(room_id))
            self.presences[room_id] = presence
        return presence

    def _on_sfu_lost(self, room_id: str) -> None:
        if room_id in self.recorders:
            self.ctx.tasks.spawn(
                self.ctx.notices.send(
                    RoomID(room_id),
                    "⚠️ I lost the connection to the call's media server. The recording so far "
                    "is saved; I'll continue in a new part as soon as the server is back.",
                ),
                "sfu-lost-notice",
            )

    async def _on_sfu_back(self, room_id: str) -> None:
        if room_id in self.recorders:
            await self.ctx.notices.send(
                RoomID(room_id), "🔴 The media server is back: recording continues in a new part."
            )

    async def _enter_call(self, room_id: str) -> None:
        """Publish the bot's call membership before its participant connects, so clients
        match the participant (show its tile, play its voice) from its first packet."""
        pub = self.calls.publisher(room_id)
        if pub is not None and pub.state == State.JOINED:
            return
        try:
            if pub is None:
                self.joined_for_media.add(room_id)
            await self.calls.join(room_id, "audio", remember=False)
        except Exception as e:
            self.log.warning("in the media of %s without a call membership: %s", room_id, e)

    async def _leave_if_idle(self, room_id: str) -> None:
        """The last role ended: forget the participant, leave the call if a role joined it."""
        presence = self.presences.get(room_id)
        if presence is not None:
            if not presence.idle:
                return
            del self.presences[room_id]
        await self._leave_call_for_media(room_id)

    async def _leave_call_for_media(self, room_id: str) -> bool:
        """True if the bot's membership was removed (it was there for a media role)."""
        if room_id not in self.joined_for_media:
            return False
        self.joined_for_media.discard(room_id)
        with contextlib.suppress(Exception):
            return await self.calls.leave(room_id)
        return False

    # -- recording ---------------------------------------------------------------------------
    def owner(self, room_id: str, identity: str) -> tuple[str, str] | None:
        """(user, device) behind a LiveKit identity: a call member's (hashed matrix_2_0
        identities too), else what an `@user:server:DEVICE` identity says."""
        found = self.calls.member_by_identity(room_id, identity)
        if found is not None:
            return found
        if identity.startswith("@") and identity.count(":") >= 2:
            user, _, device = identity.rpartition(":")
            return user, device
        return None

    def _name_for(self, room_id: str) -> Any:
        def name_for(identity: str) -> tuple[str, str]:
            owner = self.owner(room_id, identity)
            if owner is None:
                return "", ""
            user, device = owner
            return self.calls.known_name(room_id, user) or user[1:].split(":")[0], device

        return name_for

    def _resolve_name(self, room_id: str) -> Any:
        async def resolve(identity: str) -> tuple[str, str]:
            # A matrix_2_0 member's sticky membership can reach the bot after its media does;
            # the recorder bounds this wait (resolve_timeout) and buffers the audio meanwhile.
            owner = self.owner(room_id, identity)
            while owner is None and is_hashed_identity(identity):
                await asyncio.sleep(0.2)
                owner = self.owner(room_id, identity)
            if owner is None:
                return "", ""
            user, device = owner
            return await self.calls.display_name(room_id, user), device

        return resolve

    def _ignore(self, p: rtc.RemoteParticipant) -> bool:
        # Our own announcer (consent notices) and non-human participants are not recorded.
        return p.identity.startswith(f"{self.ctx.user_id}:") or (
            p.kind != rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD
        )

    async def start_recording(self, room_id: str, requester: str) -> Recorder:
        if room_id in self.recorders:
            raise MediaError("I am already recording this call. `!call record stop` ends it.")
        await self._require_call(room_id)
        settings = self.ctx.settings().recording
        refusal = recording_refusal(len(self.recorders), settings)
        if refusal is not None:
            raise MediaError(refusal)
        directory = Path(settings.directory) / room_folder(room_id)
        prefix = time.strftime("%Y-%m-%d_%H%M%S")

        async def on_empty() -> None:
            # The SFU room is empty; the call's memberships decide whether people left or are
            # reconnecting (Element Call on a busy machine): the call's end stops it then.
            if await self.calls.has_people(room_id):
                self.log.info("%s: nobody on the SFU, but people are in the call", room_id)
                return
            await self.stop_recording(room_id, reason_text="everyone left the call", speak=False)

        async def on_stopped(result: RecordingResult) -> None:
            if result.reason != "stopped":
                self.recorders.pop(room_id, None)
                await self._finish(room_id, result)

        recorder = Recorder(
            self._presence(room_id).role("recorder"),
            directory,
            prefix,
            name_for=self._name_for(room_id),
            resolve_name=self._resolve_name(room_id),
            log=self.log,
            max_seconds=settings.max_minutes * 60,
            on_empty=on_empty,
            on_stopped=on_stopped,
            ignore=self._ignore,
            exclude=lambda p: p.identity.startswith(f"{self.ctx.user_id}:"),
            withheld=self.withheld_for(room_id) if self.withheld_for else None,
            taps=[t for make in self.tap_factories if (t := make(room_id)) is not None],
            max_tracks=settings.max_tracks,
        )
        self.recorders[room_id] = recorder
        self._starting.add(room_id)
        try:
            await self._enter_call(room_id)
            if self.recorders.get(room_id) is recorder:
                await recorder.start()
        except BaseException as e:
            self.recorders.pop(room_id, None)
            await self._tell_ended(room_id)  # what its taps started ends too
            await self._leave_if_idle(room_id)
            if isinstance(e, SfuConnectError | SfuAuthError):
                self.log.warning("joining the media of %s failed: %s", room_id, e)
                raise MediaError(f"I could not join the call's media: {room_sentence(e)}.") from e
            raise
        finally:
            self._starting.discard(room_id)
        if self.recorders.get(room_id) is not recorder:  # the call ended meanwhile
            if recorder.state != "idle":
                await recorder.stop()
            await self._tell_ended(room_id)
            await self._leave_if_idle(room_id)
            raise RecordingCancelled("The call ended before the recording started.")
        self.other_sfus.follow(room_id, recorder)
        floor = DiskFloor(directory, lambda: self.ctx.settings().recording, self.log)
        self.ctx.tasks.spawn(floor.watch(recorder), "disk-floor")
        try:
            await self.recovery.started(room_id, directory, prefix)
            self._prefixes[room_id] = prefix
        except Exception:
            self.log.exception("could not note the recording in %s for crash recovery", room_id)
        if settings.spoken_consent:
            self.ctx.tasks.spawn(self._speak_consent(room_id), "consent-notice")
        return recorder

    async def stop_recording(
        self, room_id: str, reason_text: str = "", speak: bool = True
    ) -> RecordingResult | None:
        recorder = self.recorders.pop(room_id, None)
        if recorder is None:
            return None
        if speak and self.ctx.settings().recording.spoken_consent:
            with contextlib.suppress(Exception):
                await self._speak(room_id, "The recording has stopped.")
        # The membership goes before the recorder stops: stopping first unpublishes the status
        # picture while the membership stays, and Element Call shows "Waiting for media…" for
        # as long as the gap lasts (seen on a loaded machine).
        if await self._leave_call_for_media(room_id):
            # ... and clients get a moment to see it gone before the media changes: a busy
            # Element Call (0.25 in a CI run) applied the track change first all the same.
            await asyncio.sleep(CLIENTS_SEE_LEAVE_S)
        result = await recorder.stop()
        await self._finish(room_id, result, reason_text)
        return result

    async def _recording_over(self, room_id: str) -> None:
        prefix = self._prefixes.pop(room_id, None)
        if prefix is not None:
            try:
                await self.recovery.finished(room_id, prefix)
            except Exception:
                self.log.exception("could not note the end of the recording in %s", room_id)

    async def _finish(self, room_id: str, result: RecordingResult, reason_text: str = "") -> None:
        presence = self.presences.get(room_id)
        if presence is None or presence.roles <= {"announcer"}:
            # The membership goes before the participant: clients drop the bot's tile at
            # once (the other way round, Element Call shows "Waiting for media…" in between).
            await self._leave_call_for_media(room_id)
        await self._close_announcer(room_id)
        await self._leave_if_idle(room_id)
        await self._tell_ended(room_id)
        self.retention.hold(f.path for f in result.files)  # until transcribed (_after_posted)
        notes = await self.summary_notes(room_id) if self.summary_notes else []
        notes += await self.other_sfus.summary_notes(room_id)
        try:
            summary = await post_recording(self.ctx, RoomID(room_id), result, reason_text, notes)
        except BaseException:
            self.retention.release(f.path for f in result.files)
            raise
        self.ctx.tasks.spawn(self._after_posted(room_id, result, summary), "recording-posted")
        if result.errors:
            self.log.warning("recording in %s had errors: %s", room_id, result.errors)
        # Posted (or kept and said where): only now is it no longer the recovery's business.
        await self._recording_over(room_id)

    async def _tell_ended(self, room_id: str) -> None:
        for ended in self.on_recording_ended:
            try:
                await ended(room_id)
            except Exception:
                self.log.exception("after the recording in %s: %s failed", room_id, ended)

    async def _after_posted(self, room_id: str, result: RecordingResult, summary: EventID) -> None:
        """What reads the files (the transcript) first, then a retention of 0 deletes them."""
        try:
            for posted in self.on_recording_posted:
                try:
                    await posted(RoomID(room_id), result, summary)
                except Exception:
                    self.log.exception("after posting in %s: %s failed", room_id, posted)
            drop_posted_files(self.ctx, result)
        finally:
            self.retention.release(f.path for f in result.files)

    # -- announcer ---------------------------------------------------------------------------
    async def announcer(self, room_id: str) -> Announcer:
        async with self._announcer_locks.setdefault(room_id, asyncio.Lock()):
            ann = self.announcers.get(room_id)
            if ann is not None and ann.closed:  # its connection ended for good
                await self._close_announcer(room_id)
                ann = None
            if ann is None:
                await self._enter_call(room_id)
                ann = Announcer(
                    self._presence(room_id).role("announcer"),
                    available_engine(),
                    self.log,
                    join_chime=self.ctx.settings().announcer.join_chime,
                )
                try:
                    await ann.connect()
                except BaseException as e:
                    await self._leave_if_idle(room_id)
                    if isinstance(e, SfuConnectError | SfuAuthError):
                        self.log.warning("joining the media of %s failed: %s", room_id, e)
                        raise MediaError(
                            f"I could not join the call's media: {room_sentence(e)}."
                        ) from e
                    raise
                self.announcers[room_id] = ann
            return ann

    async def announce(self, room_id: str, text: str) -> float:
        await self._require_call(room_id)
        ann = await self.announcer(room_id)
        return await ann.say(text)

    async def _speak(self, room_id: str, text: str) -> None:
        try:
            await self.announce(room_id, text)
        except Exception as e:
            self.log.warning("spoken notice in %s failed: %s", room_id, e)

    async def end_roles(self, room_id: str, reason: str) -> None:
        """`!call leave`: the bot leaves the call, so its media roles end too (a recording is
        finished and posted as usual)."""
        if room_id in self.recorders:
            await self.stop_recording(room_id, reason_text=reason, speak=False)
        await self._close_announcer(room_id)
        await self._leave_if_idle(room_id)

    async def _close_announcer(self, room_id: str) -> None:
        ann = self.announcers.pop(room_id, None)
        if ann is not None:
            with contextlib.suppress(Exception):
                await ann.close()

    # -- auto-follow and scheduled recordings ------------------------------------------------
    async def on_call_event(self, room_id: str, ev: CallEvent) -> None:
        """Observer of CallManager: join in the room's auto role (or for a scheduled recording)
        when people start a call, leave when it ends."""
        if isinstance(ev, CallStarted) and ev.started_by != self.ctx.user_id:
            armed = self.armed_until.pop(room_id, 0) >= int(time.time() * 1000)
            role = await self.ctx.db.get_auto_role(room_id)
            if armed and role != "record":
                role = "record"
            if role is None:
                return
            # Encrypted room, no E2EE: say why instead of recording noise (matrix/crypto_status.py).
            if (
                refusal := await crypto_refusal(self.ctx.client, RoomID(room_id), role)
            ) is not None:
                await self.ctx.notices.send(RoomID(room_id), refusal)
                return
            try:
                if role == "record" and room_id not in self.recorders:
                    await self.start_recording(room_id, self.ctx.user_id)
                    why = (
                        "a schedule asked for it"
                        if armed
                        else "auto-record is on here; `!call auto off` turns it off"
                    )
                    await self.ctx.notices.send(
                        RoomID(room_id),
                        f"🔴 Recording this call ({why}). " + await self.consent_text(room_id),
                    )
                elif role == "announce":
                    await self.announcer(room_id)
            except Exception as e:
                if isinstance(e, RecordingCancelled) or not await self._call_on(room_id):
                    # A call that ended at once (a misclick): nothing to follow, nothing to say.
                    self.log.info("auto-%s in %s: the call ended before it began", role, room_id)
                    return
                self.log.warning("auto-%s in %s failed: %s", role, room_id, e)
                await self.ctx.notices.send(RoomID(room_id), f"Auto-{role} failed: {_why(e)}")
        elif isinstance(ev, CallEnded):
            if room_id in self._starting:
                # Not begun yet: no summary of nothing. start_recording sees it gone, stops it
                # once its connection is made (not in the middle) and leaves the call.
                self.recorders.pop(room_id, None)
            elif room_id in self.recorders:
                await self.stop_recording(room_id, reason_text="the call ended", speak=False)
            if room_id in self.announcers:
                await self._close_announcer(room_id)
                await self._leave_if_idle(room_id)
                with contextlib.suppress(Exception):
                    await self.calls.leave(room_id)

    async def _call_on(self, room_id: str) -> bool:
        try:
            await self.calls.require_call(room_id)
        except Exception:
            return False
        return True

    async def record_scheduled(self, room_id: str, title: str, duration_s: int) -> None:
        """A schedule with --record reached its start: record the call if one is on, else the
        call that starts within the schedule's duration (the bot never starts a call alone)."""
        if room_id in self.recorders:
            return
        call = (await self.calls.room(room_id)).call()
        if call is None or not any(u != self.ctx.user_id for u in call.user_ids()):
            window_s = max(duration_s, 30 * 60)
            self.armed_until[room_id] = int(time.time() * 1000) + window_s * 1000
            return
        try:
            await self.start_recording(room_id, self.ctx.user_id)
        except MediaError as e:
            await self.ctx.notices.send(
                RoomID(room_id), f"The scheduled recording failed: {_why(e)}"
            )
            return
        await self.ctx.notices.send(
            RoomID(room_id),
            "🔴 Recording this call (a schedule asked for it). "
            + await self.consent_text(room_id),
        )

    async def consent_text(self, room_id: str) -> str:
        """The posted consent notice (recording/consent.py): what is recorded, transcribed,
        captioned, and how to opt out."""
        settings = self.ctx.settings()
        consent = await room_consent(self.ctx, room_id)
        return posted_notice(settings.command, consent, settings.permissions["record_optout"] <= 0)

    async def _speak_consent(self, room_id: str) -> None:
        consent = await room_consent(self.ctx, room_id)
        await self._speak(room_id, spoken_notice(self.ctx.settings().command, consent))

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
