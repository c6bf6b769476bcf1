"""The maubot plugin: load the config, build the managers, register their handlers. Only wiring."""

from __future__ import annotations

from typing import Any

from maubot import Plugin
from maubot.handlers import event
from mautrix.types import (
    EventType,
    Membership,
    MemberStateEventContent,
    MessageType,
    StateEvent,
)
from mautrix.util.async_db import UpgradeTable
from mautrix.util.config import BaseProxyConfig

from .commands import CommandRouter
from .config import Config, ConfigError, Settings, parse_settings
from .invites import invite_allowed
from .matrix.notices import Notices
from .migrations import upgrade_table


class RtcBot(Plugin):
    settings: Settings
    notices: Notices
    router: CommandRouter

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
        self.cfg.load_and_update()
        # Refuse to start on a bad config: maubot shows the instance as stopped with the reason
        # in its log, instead of a bot that half works.
        self.settings = self._validated_settings()
        self.notices = Notices(self.client)
        self.router = CommandRouter(self)
        self.log.info("rtcbot started as %s", self.client.mxid)

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
        self.log.info("configuration reloaded")

    # -- events ------------------------------------------------------------------------------
    @event.on(EventType.ROOM_MEMBER)
    async def on_member(self, evt: StateEvent) -> None:
        content = evt.content
        if not isinstance(content, MemberStateEventContent) or evt.state_key != self.client.mxid:
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

    @event.on(EventType.ROOM_MESSAGE)
    async def on_message(self, evt: Any) -> None:
        if evt.sender == self.client.mxid or evt.content.msgtype != MessageType.TEXT:
            return
        await self.router.dispatch(evt.room_id, evt.sender, evt.event_id, evt.content.body or "")
