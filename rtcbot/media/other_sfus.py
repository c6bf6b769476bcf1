"""The other SFUs of a multi-SFU call, as far as a recording needs them.

In Element Call's multi-SFU modes (compatibility, matrix_2_0) every member publishes on its
own transport, usually its homeserver's SFU, and everyone subscribes on each SFU where
somebody publishes. The recorder connects to the bot's own SFU (its home room) and, through
this class, to each other one: their tracks are read into the same segment, files and mix.
Losing another SFU ends only its readers; they come back with its connection. The recording
itself follows the home room (segments, "SFU lost" notices).

Another SFU is not trusted for who is speaking (security review M2): each source has an
`admits(identity)` rule, and only the participants it admits are read there (those whose
call membership publishes on that SFU); everyone else there is whoever its operator says.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from livekit import rtc

from rtcbot.media.participant import Connection, State


def everyone(_identity: str) -> bool:
    return True


@dataclass
class _Source:
    conn: Connection
    admits: Callable[[str], bool] = everyone
    room: rtc.Room | None = None
    hooks: tuple[Any, Any, Any] | None = None  # (on_lost, on_reconnected, on_state)


class OtherSfus:
    def __init__(
        self,
        *,
        watch: Callable[[rtc.Room], None],
        close_readers_of: Callable[[rtc.Room | None], None],
        read_existing: Callable[[rtc.Room], None],
        recording: Callable[[], str],
        spawn: Callable[[Awaitable[Any]], None],
        log: logging.Logger,
    ) -> None:
        self._watch = watch  # registers the recorder's room event handlers
        self._close_readers_of = close_readers_of
        self._read_existing = read_existing
        self._recording = recording  # the recorder's state
        self._spawn = spawn
        self.log = log
        self._sources: dict[int, _Source] = {}  # id(connection) → source
        self._refused: set[str] = set()  # identities not admitted (logged once each)

    def __len__(self) -> int:
        return len(self._sources)

    def rooms(self) -> list[rtc.Room]:
        return [s.room for s in self._sources.values() if s.room is not None]

    def admits(self, p: rtc.RemoteParticipant) -> bool:
        """Whether that participant may be recorded: on another SFU only those its rule
        admits; on the bot's own SFU (no source here) everyone."""
        for source in self._sources.values():
            room = source.room
            if room is not None and room.remote_participants.get(p.identity) is p:
                if source.admits(p.identity):
                    return True
                if p.identity not in self._refused:
                    self._refused.add(p.identity)
                    self.log.warning(
                        "not recording %s on another SFU: no membership publishes there as them",
                        p.identity,
                    )
                return False
        return True

    def recheck(self, conn: Connection) -> None:
        """The source's rule changed: read its room again (those admitted now are read,
        those no longer admitted are not)."""
        source = self._sources.get(id(conn))
        if source is not None and source.room is not None and self._recording() == "recording":
            self._close_readers_of(source.room)
            self._read_existing(source.room)

    async def add(self, conn: Connection, admits: Callable[[str], bool] = everyone) -> None:
        """Connect and read the audio of the participants `admits` lets in on that SFU.
        Raises SfuConnectError / SfuAuthError."""
        if self._recording() not in ("recording", "interrupted") or id(conn) in self._sources:
            return
        source = _Source(conn, admits)
        self._sources[id(conn)] = source

        def setup(room: rtc.Room) -> None:  # the first room, and each one after a loss
            source.room = room
            self._watch(room)

        def lost(_message: str) -> None:
            self._close_readers_of(source.room)

        async def back(room: rtc.Room) -> None:
            if self._recording() == "recording":
                self._read_existing(room)

        def state(st: State, _detail: str | None) -> None:
            if st in ("failed", "closed") and id(conn) in self._sources:
                self.log.info("Recording without the people of another SFU (%s)", st)
                self._spawn(self.remove(conn))

        source.hooks = (lost, back, state)
        conn.on_lost.add(lost)
        conn.on_reconnected.add(back)
        conn.on_state.add(state)
        try:
            room = await conn.connect(auto_subscribe=False, setup=setup)
        except BaseException:
            await self.remove(conn)
            raise
        if self._recording() == "recording":
            self._read_existing(room)
        elif self._recording() != "interrupted":  # stopped while connecting
            await self.remove(conn)

    async def remove(self, conn: Connection) -> None:
        """Stop reading that SFU's audio and leave it."""
        source = self._sources.pop(id(conn), None)
        if source is None:
            return
        if source.hooks is not None:
            lost, back, state = source.hooks
            conn.on_lost.remove(lost)
            conn.on_reconnected.remove(back)
            conn.on_state.remove(state)
        self._close_readers_of(source.room)
        try:
            await conn.close()
        except Exception:
            self.log.exception("Leaving another SFU of the call failed")

    async def close(self) -> None:
        for source in list(self._sources.values()):
            await self.remove(source.conn)
