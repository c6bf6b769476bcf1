"""What every manager of one plugin instance may use: handed over explicitly, never the plugin.

`settings` is a getter, not a value: a config change in the admin panel replaces the Settings
object, and every manager reads the current one at the moment it needs it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
from mautrix.client import Client

from .db import DB
from .matrix.notices import Notices
from .metrics import Metrics
from .tasks import Tasks

if TYPE_CHECKING:  # assembled from the features' sections; the context imports no feature
    from .settings import Settings


@dataclass(frozen=True)
class BotContext:
    client: Client
    http: aiohttp.ClientSession
    db: DB
    notices: Notices
    metrics: Metrics
    log: logging.Logger  # the instance's logger; managers take a child of it
    settings: Callable[[], Settings]
    tasks: Tasks

    @property
    def user_id(self) -> str:
        return str(self.client.mxid)

    @property
    def device_id(self) -> str:
        return str(self.client.device_id or "RTCBOT")

    def logger(self, name: str) -> logging.Logger:
        return self.log.getChild(name)
