"""Commands maubot dropped: after a restart maubot skips the whole first /sync, so a command
sent while the bot was down or starting would vanish. Once started, read each room's recent
timeline and run the commands newer than the bot's last sign of life. The handled-command
table makes each run exactly once, whichever path sees it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from mautrix.api import Method, Path
from mautrix.types import EventID, RoomID, UserID

if TYPE_CHECKING:
    from .bot import RtcBot

ALIVE_KEY = "last_alive_ms"
ALIVE_EVERY_S = 10
# Never answer commands older than this: after a long outage, a late reply surprises more
# than it helps.
MAX_AGE_MS = 15 * 60 * 1000
PASSES_AFTER_START_S = (3, 10)


def now_ms() -> int:
    return int(time.time() * 1000)


class CommandCatchUp:
    def __init__(self, bot: RtcBot) -> None:
        self.bot = bot
        self.log = logging.getLogger("rtcbot.catch_up")
        self.started_ms = now_ms()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._run())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.bot.db.set_state(ALIVE_KEY, str(now_ms()))

    async def _run(self) -> None:
        last = await self.bot.db.get_state(ALIVE_KEY)
        since = int(last) if last and last.isdigit() else self.started_ms - 30_000
        since = max(min(since, self.started_ms) - 5_000, now_ms() - MAX_AGE_MS)
        elapsed = 0.0
        for at in PASSES_AFTER_START_S:
            await asyncio.sleep(at - elapsed)
            elapsed = at
            try:
                await self._pass(since)
            except Exception:
                self.log.exception("command catch-up failed")
        await self.bot.db.prune_commands(now_ms() - 7 * 86_400_000)
        while True:  # the bot's sign of life, for the next catch-up
            await self.bot.db.set_state(ALIVE_KEY, str(now_ms()))
            await asyncio.sleep(ALIVE_EVERY_S)

    async def _pass(self, since_ms: int) -> None:
        client = self.bot.client
        for room_id in await client.get_joined_rooms():
            resp = await client.api.request(
                Method.GET,
                Path.v3.rooms[room_id].messages,
                query_params={"dir": "b", "limit": "30"},
            )
            for evt in reversed(resp.get("chunk", [])):
                content = evt.get("content") or {}
                if (
                    evt.get("type") != "m.room.message"
                    or evt.get("sender") == client.mxid
                    or content.get("msgtype") != "m.text"
                    or int(evt.get("origin_server_ts") or 0) < since_ms
                ):
                    continue
                await self.bot.run_command(
                    RoomID(room_id),
                    UserID(evt["sender"]),
                    EventID(evt["event_id"]),
                    str(content.get("body") or ""),
                )
