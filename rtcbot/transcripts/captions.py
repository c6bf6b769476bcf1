"""Live captions: while a recording runs with captions on, each speaker's speech is cut at
pauses and posted, attributed, in a thread of the room within a few seconds.

Fed by a recorder tap (the frames the recorder writes: never an opted-out person's), per
speaker: 48 kHz → 16 kHz into a buffer; every half second a worker looks at each buffer with
the Silero VAD that faster-whisper ships (no download) and cuts an utterance when its speech
is followed by a pause (or has gone on for `MAX_UTTERANCE_S`); the utterance goes to the
shared speech model (engine.py, off the loop); its text is posted when the speaker pauses,
or, for one who speaks on, once `captions.batch_seconds` have passed since its first words
(one message per speaker every few seconds rather than one per breath).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
from mautrix.types import EventID, RoomID

from ..commands.features import feature_enabled
from ..context import BotContext
from ..matrix.notices import NAME_LIMIT, in_thread, md_escape
from ..media.recorder import AudioTap
from .engine import RATE, ModelUnavailable, SpeechToText

TICK_S = 0.5
PAUSE_S = 0.6  # silence after speech that ends an utterance
MAX_UTTERANCE_S = 12.0
MAX_BUFFER_S = 30.0  # a stalled model never makes a buffer grow without bound
_DECIMATE = 48_000 // RATE

Enabled = Callable[[str], Awaitable[bool]]
FEATURE = "captions"


@dataclass
class _Speaker:
    name: str
    audio: list[np.ndarray] = field(default_factory=list)
    samples: int = 0
    start: float = 0.0  # unix time of the buffer's first sample
    batch: list[str] = field(default_factory=list)
    batch_since: float = 0.0
    batch_at: float = 0.0  # unix time of the batch's first words
    quiet: bool = False  # no speech waiting in the buffer: the batch need not wait

    def take(self, n: int) -> np.ndarray:
        """The first `n` samples, removed from the buffer; n=0: the whole buffer, kept."""
        if not self.audio:
            return np.zeros(0, np.float32)
        buf = np.concatenate(self.audio) if len(self.audio) > 1 else self.audio[0]
        if n == 0:
            self.audio = [buf] if len(buf) else []
            return buf
        out, rest = buf[:n], buf[n:]
        self.audio = [rest] if len(rest) else []
        self.samples = len(rest)
        self.start += len(out) / RATE
        return out


class _Session:
    def __init__(self, room_id: str) -> None:
        self.room_id = room_id
        self.speakers: dict[str, _Speaker] = {}
        self.on = False  # captions turned on for this recording (decided asynchronously)
        self.root: EventID | None = None
        self.last: EventID | None = None
        self.task: asyncio.Task[None] | None = None
        self.failed = False
        self.off = False  # captions are off here: frames are not even buffered
        self.ending = False  # the recording ended: the worker finishes its round and stops

    def feed(self, key: str, _identity: str, display: str, at: float, samples: np.ndarray) -> None:
        if self.off:
            return
        sp = self.speakers.get(key)
        if sp is None:
            sp = self.speakers[key] = _Speaker(display, start=at)
        sp.name = display
        n = len(samples) // _DECIMATE * _DECIMATE
        pcm = samples[:n].astype(np.float32).reshape(-1, _DECIMATE).mean(axis=1) / 32768.0
        if not sp.samples:
            sp.start = at
        sp.audio.append(pcm)
        sp.samples += len(pcm)
        if sp.samples > MAX_BUFFER_S * RATE:  # behind: the oldest audio goes uncaptioned
            sp.take(sp.samples - int(MAX_UTTERANCE_S * RATE))


class LiveCaptions:
    def __init__(self, ctx: BotContext, speech: SpeechToText) -> None:
        self.ctx = ctx
        self.speech = speech
        self.log = ctx.logger("captions")
        self.sessions: dict[str, _Session] = {}

    def tap_for(self, room_id: str) -> AudioTap | None:
        """A recording starts: its frames are buffered until we know whether captions are on."""
        session = _Session(room_id)
        self.sessions[room_id] = session
        session.task = self.ctx.tasks.spawn(self._run(session), "live-captions")
        return session.feed if session.task is not None else None

    async def enabled_in(self, room_id: str) -> tuple[bool, str]:
        default = self.ctx.settings().captions.enabled
        return await feature_enabled(self.ctx, room_id, FEATURE, default)

    def switched(self, room_id: str, on: bool) -> bool:
        """`!call captions on|off` during a recording: applies to it at once. True if one runs."""
        session = self.sessions.get(room_id)
        if session is None or session.ending:
            return False
        if not on:
            session.off, session.ending = True, True
            session.speakers.clear()
        elif session.off and (task := self.ctx.tasks.spawn(self._run(session), "captions")):
            session.off, session.task = False, task
        return True

    async def recording_ended(self, room_id: str) -> None:
        """Before the summary: the last words are captioned, then the session ends."""
        session = self.sessions.pop(room_id, None)
        if session is None or session.task is None:
            return
        session.ending = True  # an utterance being transcribed now is not lost
        try:
            async with asyncio.timeout(30):
                await asyncio.shield(session.task)
        except (TimeoutError, Exception):
            session.task.cancel()
        if session.on and not session.failed:
            try:
                async with asyncio.timeout(30):
                    await self._caption(session, final=True)
                    await self._post(session, final=True)
            except Exception as e:
                self.log.warning("the last captions in %s failed: %s", room_id, e)

    async def stop(self) -> None:
        for room_id in list(self.sessions):
            session = self.sessions.pop(room_id)
            if session.task is not None:
                session.task.cancel()

    async def _run(self, session: _Session) -> None:
        room = session.room_id
        session.on = (await self.enabled_in(room))[0]
        if not session.on:
            session.off = True
            session.speakers.clear()
            return
        while not session.ending:
            await asyncio.sleep(TICK_S)
            try:
                await self._caption(session, final=False)
                await self._post(session, final=False)
            except ModelUnavailable as e:
                session.failed = True
                await self._say(session, f"⚠️ No live captions: {e}.")
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("live captions in %s failed", room)

    async def _caption(self, session: _Session, final: bool) -> None:
        for sp in list(session.speakers.values()):
            while sp.samples >= RATE // 2 or (final and sp.samples):
                audio = sp.take(0)  # joined on the loop: `feed` appends meanwhile
                spans = await asyncio.to_thread(speech_spans, audio)
                cut = utterance_end(spans, len(audio), final)
                sp.quiet = not spans[1 if cut else 0 :]
                if cut is None:
                    if not spans and (final or len(audio) > 2 * RATE):
                        sp.take(max(0, len(audio) - RATE // 2))  # speech may be starting
                    break
                start, end = cut
                at = sp.start + start / RATE
                words = await self.speech.transcribe_pcm(
                    sp.take(end)[start:], room=session.room_id
                )
                text = " ".join(w.text for w in words).strip()
                if text:
                    if not sp.batch:
                        sp.batch_since, sp.batch_at = time.monotonic(), at
                    sp.batch.append(text)
                if final and not spans[1:]:
                    break

    async def _post(self, session: _Session, final: bool) -> None:
        wait = self.ctx.settings().captions.batch_seconds
        now = time.monotonic()
        due = [
            sp
            for sp in session.speakers.values()
            if sp.batch and (final or sp.quiet or now - sp.batch_since >= wait)
        ]
        for sp in sorted(due, key=lambda s: s.batch_at):
            stamp = time.strftime("%H:%M:%S", time.gmtime(sp.batch_at))
            text = " ".join(sp.batch)
            sp.batch = []
            await self._say(
                session, f"**{md_escape(sp.name, NAME_LIMIT)}** ({stamp}): {md_escape(text, 2000)}"
            )

    async def _say(self, session: _Session, markdown: str) -> None:
        if session.root is None:  # opened with the first caption: no empty thread
            prefix = f"!{self.ctx.settings().command}"
            session.root = session.last = await self.ctx.notices.send(
                RoomID(session.room_id),
                f"💬 Live captions of this recording, in this thread. `{prefix} captions off` "
                "turns them off.",
            )
        session.last = await self.ctx.notices.send(
            RoomID(session.room_id), markdown, thread=in_thread(session.root, session.last)
        )


def speech_spans(audio: np.ndarray) -> list[tuple[int, int]]:
    """Where the audio holds speech, in samples (Silero VAD; blocking: run in a thread)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(min_silence_duration_ms=int(PAUSE_S * 1000), speech_pad_ms=150)
    return [(int(s["start"]), int(s["end"])) for s in get_speech_timestamps(audio, options)]


def utterance_end(
    spans: list[tuple[int, int]], length: int, final: bool
) -> tuple[int, int] | None:
    """(start, end) of the first finished utterance of a buffer of `length` samples, or None
    to wait for more audio: finished = followed by a pause, or long enough to cut (pure)."""
    if not spans:
        return None
    start, end = spans[0]
    if end <= length - int(PAUSE_S * RATE) or final or len(spans) > 1:
        return start, min(length, end + RATE // 10)
    if end - start >= MAX_UTTERANCE_S * RATE:
        return start, start + int(MAX_UTTERANCE_S * RATE)
    return None
