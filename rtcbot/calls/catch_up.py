"""Commands maubot dropped: after a restart maubot skips the whole first /sync, so a command
sent while the bot was down or starting would vanish. Once started, read each room's recent
timeline and run the commands newer than the bot's last sign of life. The handled-command
table makes each run exactly once, whichever path sees it first.

In an encrypted room the timeline holds `m.room.encrypted` events: they are decrypted with the
bot's Megolm sessions (kept in maubot's crypto store, so they survive a restart). A room key
that reached the bot only in the dropped first /sync is lost with it: for such an event the
sender's devices are asked for the key (Element re-shares keys it already shared with the
bot's device), and the next pass tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, cast

from mautrix.api import Method, Path
from mautrix.errors import DecryptionError, SessionNotFound
from mautrix.types import JSON, EncryptedEvent, EventID, RoomID, UserID

from ..context import BotContext
from ..tasks import cancel_and_wait
from .clock import now_ms

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
        self._keys_requested: set[str] = set()  # Megolm session ids asked for once

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
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
        for raw in reversed(resp.get("chunk", [])):
            if (
                raw.get("sender") == client.mxid
                or int(raw.get("origin_server_ts") or 0) < since_ms
            ):
                continue
            evt = await self._readable(room_id, raw)
            content = (evt or {}).get("content") or {}
            if (
                evt is None
                or evt.get("type") != "m.room.message"
                or content.get("msgtype") != "m.text"
            ):
                continue
            await self.run_command(
                RoomID(room_id),
                UserID(evt["sender"]),
                EventID(evt["event_id"]),
                str(content.get("body") or ""),
            )

    async def _readable(self, room_id: RoomID, raw: dict[str, Any]) -> dict[str, Any] | None:
        """The event as the bot can read it: decrypted if it is encrypted; None if it can't."""
        if raw.get("type") != "m.room.encrypted":
            return raw
        crypto = self.ctx.client.crypto
        if crypto is None:
            return None  # no crypto: the bot cannot read it (commands here are refused anyway)
        try:
            enc = EncryptedEvent.deserialize(cast(JSON, {**raw, "room_id": room_id}))
            clear = await crypto.decrypt_megolm_event(enc)
        except SessionNotFound as e:
            await self._request_key(room_id, raw, e)
            return None
        except (DecryptionError, ValueError, KeyError) as e:
            self.log.debug("catch-up: cannot decrypt %s: %s", raw.get("event_id"), e)
            return None
        return {**raw, "type": str(clear.type), "content": clear.content.serialize()}

    async def _request_key(self, room_id: RoomID, raw: dict[str, Any], e: Exception) -> None:
        content = raw.get("content") or {}
        session_id = str(content.get("session_id") or "")
        sender_key = str(content.get("sender_key") or "")
        crypto = self.ctx.client.crypto
        if crypto is None or not session_id or session_id in self._keys_requested:
            return
        self._keys_requested.add(session_id)
        self.log.warning(
            "catch-up: no room key for %s from %s (sent while the bot was down?); asking "
            "the sender's devices for it",
            raw.get("event_id"),
            raw.get("sender"),
        )
        device = str(content.get("device_id") or "*")  # "*": every device of the sender
        try:
            await crypto.request_room_key(
                room_id, sender_key, session_id, {UserID(raw["sender"]): [device]}, timeout=0
            )
        except Exception:
            self.log.exception("catch-up: the room key request failed (%s)", e)
