"""What a recorder holds in LiveKit rooms it shares with the bot's other roles: the event
handlers it registered (removed together when it stops; the room may stay connected) and the
audio tracks it subscribed to by hand (never video; unsubscribed when it stops)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from livekit import rtc


class RoomHandlers:
    def __init__(self) -> None:
        self._handlers: list[tuple[rtc.Room, str, Callable[..., Any]]] = []

    def on(self, room: rtc.Room, event: str, handler: Callable[..., Any]) -> None:
        room.on(event, handler)  # type: ignore[arg-type]
        self._handlers.append((room, event, handler))

    def remove_all(self) -> None:
        for room, event, handler in self._handlers:
            with contextlib.suppress(Exception):
                room.off(event, handler)  # type: ignore[arg-type]
        self._handlers.clear()


class AudioSubscriptions:
    def __init__(
        self,
        wanted: Callable[[rtc.RemoteParticipant], bool],
        active: Callable[[], bool],
        log: logging.Logger,
    ) -> None:
        self.wanted = wanted  # whose audio is recorded at all
        self.active = active  # whether the recorder takes tracks now
        self.log = log
        self._subscribed: dict[str, rtc.RemoteTrackPublication] = {}

    def want(self, pub: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant) -> None:
        """Subscribe to an audio track while recording (never to video)."""
        if pub.kind != rtc.TrackKind.KIND_AUDIO or not self.active():
            return
        if not self.wanted(participant):
            return
        self._subscribed[pub.sid] = pub
        if not pub.subscribed:
            try:
                pub.set_subscribed(True)
            except Exception:
                self.log.exception("subscribing to %s of %s failed", pub.sid, participant.identity)

    def existing(self, room: rtc.Room) -> None:
        """Tracks published before the recorder was set up (no `track_published` for them)."""
        for p in list(room.remote_participants.values()):
            for pub in list(p.track_publications.values()):
                self.want(pub, p)

    def refuse(self, pub: rtc.RemoteTrackPublication) -> None:
        """Not recorded after all (too many speakers): no bandwidth or decoding for it."""
        self._subscribed.pop(pub.sid, None)
        with contextlib.suppress(Exception):
            pub.set_subscribed(False)

    def forget(self) -> None:
        """A new room after a lost connection: the old room's publications are gone."""
        self._subscribed.clear()

    def drop_all(self) -> None:
        subscribed, self._subscribed = self._subscribed, {}
        for pub in subscribed.values():
            with contextlib.suppress(Exception):
                pub.set_subscribed(False)
