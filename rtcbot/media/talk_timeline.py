"""Who spoke when in one room, for the call card: from the recorder's audio or LiveKit.

Two sources, each with the time it watched ("coverage"):

- while the bot records, an audio tap (recorder.AudioTap) sees every frame it writes: a frame
  whose RMS is above audio_files.DEFAULT_SPEECH_THRESHOLD counts as speech; the recording
  covers the time its frames came in (a recorder that never got going covers nothing);
- otherwise LiveKit's `active_speakers_changed` of the bot's participant. The SFU tells a
  participant only about those it is subscribed to (livekit-server pkg/rtc/participant_signal.go,
  SendSpeakerUpdate), so this covers time only while the bot's participant may subscribe: an
  announcer (publish only) learns nothing, and talk time stays unknown rather than a false 0.

The recording's audio counts where the recording ran, the active speakers elsewhere. Speech
closer than `gap_s` is one interval. LiveKit identities become Matrix users through `owner`
(calls/identities.py). Times are unix seconds; everything runs on the event loop and only
appends to short lists.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .audio_files import DEFAULT_SPEECH_THRESHOLD, RATE
from .recorder import AudioTap

Owner = Callable[[str], tuple[str, str] | None]  # identity → (user, device)
Clock = Callable[[], float]
Span = tuple[float, float]
DEFAULT_GAP_S = 0.5
RECORDING = "recording"
SPEAKERS = "LiveKit's active speakers"


@dataclass
class _Spans:
    """Intervals [start, end] in seconds, merged as they come (roughly in order)."""

    gap_s: float
    items: list[list[float]] = field(default_factory=list)

    def add(self, start: float, end: float) -> None:
        if end <= start:
            return
        for span in reversed(self.items[-4:]):  # frames of one stream arrive in order
            if start - span[1] <= self.gap_s and span[0] - end <= self.gap_s:
                span[0], span[1] = min(span[0], start), max(span[1], end)
                return
        self.items.append([start, end])

    def between(self, start: float, end: float) -> list[Span]:
        return [(max(s, start), min(e, end)) for s, e in self.items if e > start and s < end]

    def drop_before(self, before: float) -> None:
        self.items = [s for s in self.items if s[1] >= before]


@dataclass
class TalkData:
    """What the sources saw of a time window: speech per user, and for how long they watched."""

    source: str
    covered_s: float
    talk: dict[str, list[Span]]


def _total(spans: list[Span]) -> float:
    return sum(max(0.0, e - s) for s, e in spans)


def _minus(span: Span, cuts: list[Span]) -> list[Span]:
    """The parts of `span` outside every interval of `cuts`."""
    pieces = [span]
    for cs, ce in cuts:
        pieces = [
            part
            for s, e in pieces
            for part in ((s, min(e, cs)), (max(s, ce), e))
            if part[1] > part[0]
        ]
    return pieces


class TalkTimeline:
    """The talk intervals of one room, per source."""

    def __init__(
        self, owner: Owner, gap_s: float = DEFAULT_GAP_S, clock: Clock = time.time
    ) -> None:
        self.owner = owner
        self.gap_s = gap_s
        self.clock = clock
        self._talk: dict[str, dict[str, _Spans]] = {RECORDING: {}, SPEAKERS: {}}
        self._coverage: dict[str, _Spans] = {RECORDING: _Spans(1.0), SPEAKERS: _Spans(1.0)}
        self._watching_since: float | None = None  # active speakers: an open window
        self._speaking: dict[str, float] = {}  # active speaker identity → since
        self._users: dict[str, str | None] = {}  # identity → user (cached once known)

    def user_of(self, identity: str) -> str | None:
        if self._users.get(identity) is None:
            found = self.owner(identity)
            self._users[identity] = found[0] if found is not None else None
        return self._users[identity]

    def heard(self, source: str, identity: str, start: float, end: float) -> None:
        user = self.user_of(identity)
        if user is not None:
            self._talk[source].setdefault(user, _Spans(self.gap_s)).add(start, end)

    # -- the recording -----------------------------------------------------------------------
    def tap(self, threshold: float = DEFAULT_SPEECH_THRESHOLD) -> AudioTap:
        """An audio tap for the recorder: frames → coverage, loud frames → speech."""

        def on_frame(
            _key: str, identity: str, _display: str, at: float, samples: np.ndarray
        ) -> None:
            if not len(samples):
                return
            end = at + len(samples) / RATE
            self._coverage[RECORDING].add(at, end)
            x = samples.astype(np.float32)
            if float(np.sqrt(np.mean(x * x))) > threshold:
                self.heard(RECORDING, identity, at, end)

        return on_frame

    # -- LiveKit's active speakers -----------------------------------------------------------
    def watch_speakers(self, on: bool) -> None:
        """The bot's participant starts or stops being told who speaks."""
        now = self.clock()
        if on:
            if self._watching_since is None:
                self._watching_since = now
            return
        if self._watching_since is not None:
            self._coverage[SPEAKERS].add(self._watching_since, now)
            self._watching_since = None
        self.speakers([])  # whoever was speaking is no longer heard

    def speakers(self, identities: list[str]) -> None:
        """The active speakers now (the whole list, as `active_speakers_changed` gives it)."""
        now = self.clock()
        current = set(identities)
        for identity in [i for i in self._speaking if i not in current]:
            self.heard(SPEAKERS, identity, self._speaking.pop(identity), now)
        for identity in current:
            self._speaking.setdefault(identity, now)

    # -- reading -----------------------------------------------------------------------------
    def window(self, start: float, end: float) -> TalkData | None:
        """Who spoke between start and end; None if no source watched (unknown, not 0)."""
        now = self.clock()
        for identity, since in list(self._speaking.items()):  # still talking: up to now
            self.heard(SPEAKERS, identity, since, now)
            self._speaking[identity] = now
        recorded = self._coverage[RECORDING].between(start, end)
        watched = self._coverage[SPEAKERS].between(start, end)
        if self._watching_since is not None and self._watching_since < end:
            watched.append((max(self._watching_since, start), end))
        told = [piece for span in watched for piece in _minus(span, recorded)]
        rec_s, spk_s = _total(recorded), _total(told)
        if rec_s <= 0 and spk_s <= 0:
            return None
        talk: dict[str, list[Span]] = {}
        for user, spans in self._talk[RECORDING].items():
            talk.setdefault(user, []).extend(spans.between(start, end))
        for user, spans in self._talk[SPEAKERS].items():
            for span in spans.between(start, end):
                talk.setdefault(user, []).extend(_minus(span, recorded))
        if rec_s > 0 and spk_s > 0:
            source = f"{RECORDING} and {SPEAKERS}"
        else:
            source = RECORDING if rec_s > 0 else SPEAKERS
        return TalkData(source, rec_s + spk_s, {u: sorted(t) for u, t in talk.items() if t})

    def drop_before(self, before: float) -> None:
        """Forget what ended before `before` (a card was made of it)."""
        for by_user in self._talk.values():
            for spans in by_user.values():
                spans.drop_before(before)
        for cov in self._coverage.values():
            cov.drop_before(before)


class SpeakerListener:
    """Feeds a TalkTimeline from the `active_speakers_changed` events of the bot's LiveKit
    participant. `follow(room)` whenever its rtc.Room may have changed (a reconnect after an
    SFU loss makes a new one; None when it is not connected)."""

    def __init__(self, timeline: TalkTimeline, log: logging.Logger) -> None:
        self.timeline = timeline
        self.log = log
        self.room: Any = None  # the rtc.Room listened to
        self._handler: Callable[[list[Any]], None] | None = None

    def follow(self, room: Any) -> None:
        connected = room is not None and room.isconnected()
        if room is not self.room:
            self.stop()
            if connected:
                self._attach(room)
        subscribes = connected and bool(room.local_participant.permissions.can_subscribe)
        self.timeline.watch_speakers(subscribes)

    def _attach(self, room: Any) -> None:
        def on_speakers(speakers: list[Any]) -> None:
            self.timeline.speakers([p.identity for p in speakers])

        room.on("active_speakers_changed", on_speakers)
        self.room, self._handler = room, on_speakers

    def stop(self) -> None:
        if self.room is not None and self._handler is not None:
            try:
                self.room.off("active_speakers_changed", self._handler)
            except Exception as e:  # a room already released
                self.log.debug("could not detach the speaker listener: %s", e)
        self.room, self._handler = None, None
        self.timeline.watch_speakers(False)
