"""Whether anyone is left in a recorded call's media: told once when the last person goes
(again only after someone came back). When the SFU itself goes away every participant
vanishes at once; that is a lost connection (a new segment follows), not people leaving, so
emptiness counts only while the room is connected."""

from __future__ import annotations

import logging
from collections.abc import Callable

from livekit import rtc


class EmptyRoomWatch:
    def __init__(
        self,
        rooms: Callable[[], list[rtc.Room]],
        ignores: Callable[[rtc.RemoteParticipant], bool],
        recording: Callable[[], bool],
        on_empty: Callable[[], None],
        log: logging.Logger,
    ) -> None:
        self.rooms = rooms  # every room the recording reads (the bot's SFU and the others)
        self.ignores = ignores  # not a person (agents, the bot's own participants)
        self.recording = recording
        self.on_empty = on_empty
        self.log = log
        self.fired = False

    def joined(self, p: rtc.RemoteParticipant) -> None:
        if not self.ignores(p):
            self.fired = False

    def check(self, room: rtc.Room, leaving: str | None = None) -> None:
        if self._people(leaving):
            self.fired = False
            return
        if self.fired or not self.recording():
            return
        if room.connection_state != rtc.ConnectionState.CONN_CONNECTED:
            return
        self.fired = True
        self.log.info("Nobody is left in the recorded room")
        self.on_empty()

    def _people(self, leaving: str | None) -> bool:
        return any(
            p.identity != leaving and not self.ignores(p)
            for r in self.rooms()
            for p in r.remote_participants.values()
        )
