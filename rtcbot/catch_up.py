"""Commands maubot dropped: after a restart maubot skips the whole first /sync, so a command
sent while the bot was down or starting would vanish. Once started, read each room's recent
timeline and run the commands newer than the bot's last sign of life. The handled-command
table makes each run exactly once, whichever path sees it first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from mautrix.api import Method, Path
from mautrix.types import EventID, RoomID, UserID

from .clock import now_ms
from .context import BotContext

# (room, sender, event id, text) → runs the command exactly once (CommandRouter.run_command).
RunCommand = Callable[[RoomID, UserID, EventID, str], Awaitable[None]]

ALIVE_KEY = "last_alive_ms"
ALIVE_EVERY_S = 10
# Never answer commands older than this: after a long outage, a late reply surprises more
# than it helps.
MAX_AGE_MS = 15 * 60 * 1000
PASSES_AFTER_START_S = (3, 10)


class CommandCatchUp:
    def __init__(self, ctx: BotContext, run_command: RunCommand) -> None:
        self.ctx = ctx
        self.run_command = run_command
        self.log = ctx.logger("catch_up")
        self.started_ms = now_ms()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.ctx.db.set_state(ALIVE_KEY, str(now_ms()))

    async def _run(self) -> None:
        db = self.ctx.db
        last = await db.get_state(ALIVE_KEY)
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
        try:
            await db.prune_commands(now_ms() - 7 * 86_400_000)
        except Exception:
            self.log.exception("pruning handled commands failed")
        while True:  # the bot's sign of life, for the next catch-up
            try:
                await db.set_state(ALIVE_KEY, str(now_ms()))
            except Exception:
                # A database hiccup must not end the loop: the next beat retries.
                self.log.exception("could not store the bot's sign of life")
            await asyncio.sleep(ALIVE_EVERY_S)

    async def _pass(self, since_ms: int) -> None:
        for room_id in await self.ctx.client.get_joined_rooms():
            try:
                await self._room_pass(room_id, since_ms)
            except Exception:
                # One unreadable room must not hide the commands of the others.
                self.log.exception("command catch-up in %s failed", room_id)

    async def _room_pass(self, room_id: RoomID, since_ms: int) -> None:
        client = self.ctx.client
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
            await self.run_command(
                RoomID(room_id),
                UserID(evt["sender"]),
                EventID(evt["event_id"]),
                str(content.get("body") or ""),
            )
