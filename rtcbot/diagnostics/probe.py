"""What every group of checks receives: the `Probe` (the bot's context, the call directory and
request helpers bounded by one timeout) and the `RunState` of the run in progress.

Check groups are plain functions `(probe, run)`; they share results only through the run
(the homeserver's /versions and /capabilities, the discovered authorization service).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
from mautrix.api import Method, Path
from mautrix.errors import MatrixRequestError
from mautrix.types import EventID, RoomID

from ..context import BotContext
from ..e2ee.keys_report import KeysReport
from ..matrix.delayed_events import DelayedEvents
from ..ports import CallDirectory
from .report import FAIL, LINES, Check, matrix_error

REQUEST_TIMEOUT_S: Final = 3.0  # one HTTP request
HTTP_READ_LIMIT: Final = 16 * 1024

ServerInfo = tuple[dict[str, Any], dict[str, Any]]  # (/versions, /capabilities)


@dataclass
class RunState:
    """One run of the diagnostics: its results so far and what its checks share."""

    room_id: RoomID
    verbose: bool
    started: float  # monotonic
    secrets: set[str]
    results: dict[str, Check] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    event_id: EventID | None = None  # the report's own event
    sent_before_ms: float = 0  # wall clock around sending the report, for the clock check
    sent_after_ms: float = 0
    server_info: asyncio.Task[ServerInfo] | None = None
    discovery_done: asyncio.Event = field(default_factory=asyncio.Event)
    service_url: str | None = None
    service_source: str = ""
    sfu_url: str | None = None  # the advertised transport's `url`, if it has one

    def put(self, check: Check) -> None:
        self.results[check.name] = check
        self.changed.set()

    def missing(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if n not in self.results]

    def ordered(self) -> list[Check]:
        return [self.results[n] for n in LINES if n in self.results]


@dataclass(frozen=True)
class Probe:
    """The bot's seat: its context, the call directory, and requests that give up in time."""

    ctx: BotContext
    calls: CallDirectory
    log: logging.Logger
    request_timeout: float = REQUEST_TIMEOUT_S
    # The media key exchange of the bot's encrypted call in a room (e2ee/call_keys.py).
    keys_report: Callable[[str], KeysReport | None] | None = None

    @property
    def server_name(self) -> str:
        return self.ctx.user_id.split(":", 1)[1]

    @property
    def member_id(self) -> str:
        """The member id the bot's diagnostic token requests use (not its call's)."""
        return f"{self.ctx.device_id}-diag"

    def delayed_events(self) -> DelayedEvents:
        return DelayedEvents(self.ctx.client, request_timeout=self.request_timeout)

    async def matrix(
        self, method: Method, path: Any, content: Any = None, query: dict[str, str] | None = None
    ) -> Any:
        # No retries: a slow homeserver is what the report should show, not hide.
        async with asyncio.timeout(self.request_timeout):
            return await self.ctx.client.api.request(
                method, path, content, query_params=query, retry_count=0
            )

    async def http(
        self, method: str, url: str, json_body: Any = None
    ) -> tuple[int, dict[str, Any], str]:
        """(status, JSON object or {}, text) of a request that follows no redirect."""
        async with asyncio.timeout(self.request_timeout):
            async with self.ctx.http.request(
                method, url, json=json_body, allow_redirects=False
            ) as resp:
                raw = await resp.content.read(HTTP_READ_LIMIT)
                status = resp.status
        text = raw.decode("utf-8", errors="replace")
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        return status, body if isinstance(body, dict) else {}, text

    async def server_info(self) -> ServerInfo:
        versions, caps = await asyncio.gather(
            self.matrix(Method.GET, Path.versions),
            self.matrix(Method.GET, Path.v3.capabilities),
        )
        return dict(versions or {}), dict(caps or {})


async def versions_and_caps(run: RunState, name: str) -> ServerInfo | None:
    """The run's shared /versions and /capabilities; on failure, line `name` says why."""
    assert run.server_info is not None
    try:
        # Shielded: one check timing out must not cancel the request the others wait for.
        return await asyncio.shield(run.server_info)
    except (MatrixRequestError, TimeoutError, aiohttp.ClientError) as e:
        run.put(
            Check(
                name,
                FAIL,
                "the homeserver did not answer /versions or /capabilities",
                cause=matrix_error(e),
                fix="Check that the homeserver is up and reachable from the bot.",
            )
        )
        return None
