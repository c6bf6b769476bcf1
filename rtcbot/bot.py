"""The maubot plugin: load the config, build the managers, register their handlers. Only wiring."""

from __future__ import annotations

from typing import Any

from maubot import Plugin
from maubot.handlers import event
from mautrix.types import (
    EventID,
    EventType,
    Membership,
    MemberStateEventContent,
    MessageType,
    RoomID,
    StateEvent,
    UserID,
)
from mautrix.util import background_task
from mautrix.util.async_db import UpgradeTable
from mautrix.util.config import BaseProxyConfig

from .call_commands import CallCommands
from .calls import CALL_MEMBER, RTC_MEMBER, CallManager
from .catch_up import CommandCatchUp
from .commands import CommandRouter
from .config import Config, ConfigError, Settings, parse_settings
from .db import DB
from .diagnostics import Diagnostics
from .invites import invite_allowed
from .log_redaction import install as install_log_redaction
from .matrix.notices import Notices
from .matrix.transports import TransportDiscovery
from .media_commands import MediaCommands
from .media_roles import MediaRoles
from .metrics import Metrics
from .migrations import upgrade_table
from .schedules import ScheduleManager
from .web import WebEndpoints


class RtcBot(Plugin):
    settings: Settings
    notices: Notices
    router: CommandRouter
    db: DB
    calls: CallManager
    transports: TransportDiscovery
    catch_up: CommandCatchUp
    metrics: Metrics
    media: MediaRoles

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
        install_log_redaction()
        self.cfg.load_and_update()
        # Refuse to start on a bad config: maubot shows the instance as stopped with the reason
        # in its log, instead of a bot that half works.
        self.settings = self._validated_settings()
        self.db = DB(self.database)
        self.notices = Notices(self.client)
        self.transports = TransportDiscovery(self.client)
        self.router = CommandRouter(self)
        CallCommands(self).register(self.router)
        Diagnostics(self).register(self.router)
        self.metrics = Metrics(self._live_metrics)
        self.calls = CallManager(self)
        self.media = MediaRoles(self)
        MediaCommands(self).register(self.router)
        await self.media.start()
        if self.webapp is not None:
            WebEndpoints(self).mount(self.webapp)
        await self.calls.start()
        self.schedules = ScheduleManager(self)
        self.schedules.register(self.router)
        await self.schedules.start()
        self.catch_up = CommandCatchUp(self)
        self.catch_up.start()
        background_task.create(self.calls.rejoin_after_restart())
        self.log.info("rtcbot started as %s", self.client.mxid)

    async def stop(self) -> None:
        if hasattr(self, "schedules"):
            await self.schedules.stop()
        if hasattr(self, "catch_up"):
            await self.catch_up.stop()
        if hasattr(self, "media"):
            await self.media.stop()
        if hasattr(self, "calls"):
            await self.calls.stop()

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
        self.transports.invalidate()
        self.log.info("configuration reloaded")

    def _live_metrics(self) -> dict[str, float]:
        values = self.calls.live_metrics() if hasattr(self, "calls") else {}
        values["rtcbot_recordings_active"] = len(self.recordings_status())
        return values

    def recordings_status(self) -> list[dict[str, object]]:
        return self.media.status_json() if hasattr(self, "media") else []

    async def transport_url(self) -> str:
        found = await self.transports.discover(self.settings.livekit.service_url)
        return found.service_url or ""

    async def run_command(
        self, room_id: RoomID, sender: UserID, event_id: EventID, text: str
    ) -> None:
        """Run a command exactly once, whether it came live or from the catch-up."""
        from .command_line import parse_command_line

        if parse_command_line(text, self.settings.command) is None:
            return
        if not await self.db.claim_command(str(event_id), str(room_id)):
            return
        await self.router.dispatch(room_id, sender, event_id, text)

    # -- events ------------------------------------------------------------------------------
    @event.on(EventType.ROOM_MEMBER)
    async def on_member(self, evt: StateEvent) -> None:
        content = evt.content
        if not isinstance(content, MemberStateEventContent):
            return
        if evt.state_key != self.client.mxid:
            await self.calls.on_room_member(evt)
            return
        if content.membership != Membership.INVITE:
            return
        inv = self.settings.invites
        if invite_allowed(evt.sender, inv.allowed_users, inv.allowed_servers):
            self.log.info("accepting invite to %s from %s", evt.room_id, evt.sender)
            await self.client.join_room(evt.room_id)
        else:
            self.log.info("declining invite to %s from %s (not allowed)", evt.room_id, evt.sender)
            await self.client.leave_room(
                evt.room_id, reason="rtcbot only accepts invites from allowed users and servers"
            )

    @event.on(CALL_MEMBER)
    async def on_call_member(self, evt: StateEvent) -> None:
        await self.calls.on_call_member(evt)

    @event.on(RTC_MEMBER)
    async def on_rtc_member(self, evt: Any) -> None:
        await self.calls.on_sticky_member(evt)

    @event.on(EventType.ROOM_MESSAGE)
    async def on_message(self, evt: Any) -> None:
        if evt.sender == self.client.mxid or evt.content.msgtype != MessageType.TEXT:
            return
        await self.run_command(evt.room_id, evt.sender, evt.event_id, evt.content.body or "")
