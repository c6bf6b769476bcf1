"""The maubot plugin: load the config, build the managers, wire them, register their handlers.

Only wiring. Each manager gets a BotContext and the narrow protocols it needs (ports.py); the
managers declare their own event handlers and are registered with maubot's
`register_handler_class`. See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from maubot import Plugin
from mautrix.util.async_db import UpgradeTable
from mautrix.util.config import BaseProxyConfig

from . import redaction
from .auth.delegations import DelegatedLeaves
from .auth.web import WebEndpoints
from .calls.cards import CallCards
from .calls.catch_up import CommandCatchUp
from .calls.commands import CallCommands
from .calls.identities import identity_owner
from .calls.invites import OwnMembership
from .calls.manager import CallManager
from .calls.slots import SlotCommands
from .commands.features import captions_command, transcript_command
from .commands.router import CommandRouter
from .config import ConfigError
from .context import BotContext
from .db import DB
from .diagnostics import Diagnostics
from .e2ee.call_keys import CallKeys
from .matrix.encryption_guard import EncryptionGuard
from .matrix.notices import Notices
from .matrix.to_device import MEDIA_KEY_TYPES, EncryptedToDevice
from .matrix.transports import TransportDiscovery
from .media.heap import limit_arenas
from .media.heap import live_metrics as process_memory
from .metrics import Metrics
from .migrations import upgrade_table
from .recording.commands import MediaCommands
from .recording.deletion import PostedRecordings, RecordingDeleter
from .recording.follow import CallFollower
from .recording.optout import RecordingOptOuts
from .recording.sessions import MediaSessions
from .rtc.member_fields import Transport
from .schedules.commands import ScheduleCommands
from .schedules.runner import ScheduleRunner
from .settings import Config, Settings, parse_settings
from .tasks import Tasks, owned_by, plugin_tasks
from .transcripts.ask_command import AskCommand
from .transcripts.captions import LiveCaptions
from .transcripts.chat_client import ChatClient
from .transcripts.engine import SpeechToText
from .transcripts.jobs import TranscriptJobs
from .transcripts.recap_command import RecapCommand
from .transcripts.recaps import Recaps
from .transcripts.search import TranscriptSearch
from .transcripts.search_command import SearchCommand

# Background tasks get this long to finish on stop (a notice being posted) before cancel.
STOP_GRACE_S = 2.0


class RtcBot(Plugin):
    settings: Settings
    tasks: Tasks
    speech: SpeechToText
    _stop_steps: list[Callable[[], Awaitable[None]]] = []
    _tasks_before: set[asyncio.Task[Any]] = set()

    @classmethod
    def get_config_class(cls) -> type[BaseProxyConfig]:
        return Config

    @classmethod
    def get_db_upgrade_table(cls) -> UpgradeTable:
        return upgrade_table

    @property
    def cfg(self) -> Config:
        assert isinstance(self.config, Config)  # config: true in maubot.yaml
        return self.config

    async def start(self) -> None:
        # Tasks of rtcbot code already running (another instance in this maubot): not ours.
        self._tasks_before = set(plugin_tasks())
        redaction.install_log_filter()
        limit_arenas()  # before the media threads start: maubot's memory stays put (heap.py)
        self.cfg.load_and_update()
        # Refuse to start on a bad config: maubot shows the instance as stopped with the reason
        # in its log, instead of a bot that half works.
        self.settings = self._validated_settings()
        self._remember_secrets()
        # Before anything can send: nothing unencrypted into an encrypted room.
        self._guard = EncryptionGuard(self.client, self.log.getChild("e2ee"))
        self._guard.install()
        self.tasks = Tasks(self.log.getChild("tasks"))
        self.transports = TransportDiscovery(self.client, self.log.getChild("transports"))
        ctx = BotContext(
            client=self.client,
            http=self.http,
            db=DB(self.database),
            notices=Notices(self.client),
            metrics=Metrics(),
            log=self.log,
            settings=lambda: self.settings,
            tasks=self.tasks,
        )

        async def home_transport() -> Transport | None:
            found = await self.transports.discover(self.settings.livekit.service_url)
            return found.transport

        router = CommandRouter(ctx)
        own = OwnMembership(ctx)
        calls = CallManager(ctx, home_transport)
        call_keys = CallKeys(ctx, calls)  # Element Call's media keys (encrypted calls)
        owner = partial(identity_owner, calls)  # whose is a LiveKit identity
        optouts = RecordingOptOuts(ctx, owner, calls.display_name)
        media = MediaSessions(
            ctx,
            calls,
            home_transport,
            keyrings=call_keys,
            withheld_for=optouts.withheld_for,
            summary_notes=optouts.summary_notes,
        )
        follower = CallFollower(media)
        schedules = ScheduleRunner(
            ctx,
            calls,
            start_recording=lambda room_id, s: follower.record_scheduled(
                room_id, s.title, s.duration_s
            ),
        )
        catch_up = CommandCatchUp(ctx, router.run_command)
        delegations = DelegatedLeaves(ctx)

        # ONE speech model per instance, shared by the transcripts and the live captions.
        self.speech = SpeechToText(
            lambda: self.settings.transcripts.model_settings(), ctx.logger("speech")
        )
        search = TranscriptSearch(ctx.db.db)
        transcripts = TranscriptJobs(ctx, self.speech, search)
        posted = PostedRecordings(ctx.db.db)  # first: a deletion must find it while transcribed
        media.shared.recording_posted.add(posted.after_recording)
        media.shared.recovery.on_posted = posted.remember  # one a crash cut off, too
        media.shared.recording_posted.add(transcripts.after_recording)
        chat = ChatClient()
        recaps = Recaps(ctx, search, chat)
        transcripts.after_transcript = recaps.after_transcript

        async def forget_recording(room_id: str, recording: str) -> None:
            await search.forget_recording(room_id, recording)
            await recaps.forget(room_id, recording)

        deleter = RecordingDeleter(ctx, posted, media.shared.retention.held, forget_recording)
        optouts.forget_speaker = search.forget_speaker
        captions = LiveCaptions(ctx, self.speech)  # while recording, if the room wants them
        media.shared.tap_factories.append(captions.tap_for)
        media.shared.recording_ended.add(captions.recording_ended)
        calls.observers.append(follower.on_call_event)
        cards = CallCards(  # the card at the end of a call, with who spoke when
            ctx,
            display_name=calls.display_name,
            current_call=lambda r, key: rc.calls.get(key) if (rc := calls.rooms.get(r)) else None,
            sfu_room=media.sfu_room,
            owner=owner,
            opted_out=optouts.is_opted_out,
        )
        calls.event_observers.add(cards.on_event)
        calls.notices.end_card = cards.post_ended
        media.shared.tap_factories.append(cards.tap_for)
        own.on_room_gone.add(media.forget_room, calls.forget_room, cards.forget_room)
        own.on_room_gone.add(optouts.forgotten)
        ctx.metrics.add_live_source(calls.live_metrics)
        ctx.metrics.add_live_source(media.live_metrics)
        ctx.metrics.add_live_source(delegations.live_metrics)
        ctx.metrics.add_live_source(call_keys.live_metrics)
        ctx.metrics.add_live_source(self.speech.live_metrics)
        ctx.metrics.add_live_source(process_memory)
        CallCommands(ctx, calls, end_media=media.end_roles).register(router)
        MediaCommands(ctx, media, calls, optouts, deleter).register(router)
        SearchCommand(search).register(router)
        RecapCommand(ctx, recaps, search).register(router)
        AskCommand(recaps, search, chat).register(router)
        ScheduleCommands(ctx, schedules).register(router)
        SlotCommands(ctx).register(router)
        transcript_command(ctx).register(router)
        captions_command(ctx, captions.switched).register(router)
        Diagnostics(ctx, calls, keys_report=call_keys.report).register(router)
        await delegations.start()  # the stored jobs run before new requests can arrive
        web: WebEndpoints | None = None
        if self.webapp is not None:
            web = WebEndpoints(
                ctx,
                calls.status_json,
                media.status_json,
                on_room_finished=media.on_sfu_room_finished,
                task_count=lambda: len(self._own_tasks()),
                delegate=delegations.delegate,
                on_participant=delegations.on_participant,
                own_url=str(self.webapp_url or ""),
            )
            web.mount(self.webapp)
        # Olm-encrypted to-device events (Element Call's media keys), authenticated.
        to_device = EncryptedToDevice(self.client, ctx.logger("to_device"))
        for key_type in MEDIA_KEY_TYPES:
            to_device.subscribe(key_type, call_keys.on_keys)
        for handlers in (router, own, calls, to_device):
            self.register_handler_class(handlers)

        # On stop: nothing new is scheduled, running tasks end, then media, then calls (which
        # leaves the calls last, after the recordings are posted). Delegated leaves first: their
        # tasks never end by themselves (the jobs stay in the database).
        self._stop_steps = [
            delegations.stop,
            schedules.stop,
            catch_up.stop,
            captions.stop,
            transcripts.stop,  # a running transcript is cancelled, not waited for
            chat.close,
            lambda: self.tasks.close(grace_s=STOP_GRACE_S),
            media.stop,
            cards.stop,
            call_keys.stop,
            calls.stop,
            *([web.close] if web is not None else []),  # the auth service's own connections
            self.speech.close,  # its worker process never outlives the plugin
        ]
        await optouts.start()
        await calls.start()
        await cards.start()
        await media.start()
        await schedules.start()
        catch_up.start()
        self.log.info("rtcbot started as %s", self.client.mxid)

    async def stop(self) -> None:
        steps, self._stop_steps = self._stop_steps, []
        for step in steps:
            try:
                await step()
            except Exception:
                self.log.exception("stopping rtcbot: %s failed", step)
        guard = getattr(self, "_guard", None)
        if guard is not None:
            guard.uninstall()
        # Nothing of the plugin may outlive it (a reload would otherwise run two of it).
        left = self._own_tasks()
        self.log.info(
            "rtcbot stopped; %d of its tasks still running%s",
            len(left),
            "".join(f"\n  {t.get_name()}: {t.get_coro()}" for t in left),
        )

    def _own_tasks(self) -> list[asyncio.Task[Any]]:
        """Running tasks of rtcbot code started since this instance started, less the loops
        of another instance of the plugin started meanwhile (e.g. after a restart of maubot)."""
        return [t for t in plugin_tasks() if t not in self._tasks_before and owned_by(t, self.log)]

    def _validated_settings(self) -> Settings:
        try:
            return parse_settings(self.cfg)
        except ConfigError as e:
            self.log.error("Invalid rtcbot configuration: %s", e)
            raise

    def on_external_config_update(self) -> None:
        self.cfg.load_and_update()
        try:
            self.settings = parse_settings(self.cfg)
        except ConfigError as e:
            # Keep running with the last good settings rather than dropping active calls.
            self.log.error("Config change rejected, keeping the previous settings: %s", e)
            return
        self._remember_secrets()
        self.transports.invalidate()
        self.log.info("configuration reloaded")

    def _remember_secrets(self) -> None:
        s = self.settings
        token = str(self.client.api.token or "")
        redaction.remember(s.livekit.api_secret, s.auth_service.api_secret, token)
        redaction.remember(s.web.status_token, s.web.metrics_token, s.recap.api_key)
