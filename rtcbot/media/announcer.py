"""The bot's voice in a call: one published microphone track that speaks announcements.

The announcer joins through a `Connection` (a `Participant` of its own, or its role on the
bot's one participant in the call: presence.py) with announcer grants (may publish a
microphone, does not subscribe), publishes one `LocalAudioTrack` from an `AudioSource`, and
feeds speech into it in 100 ms frames. `capture_frame` returns once a frame is in the source's 1 s native
queue, so feeding paces itself at real time; `say` returns after the audio has played out.
When the SFU connection is replaced (see Participant), the track is published again; when the
announcer closes, it unpublishes its track before it lets go of the connection (which may stay
for the recorder).

In an end-to-end encrypted call (the connection has a frame key ring) the track must go out
encrypted: a publication the SFU reports without encryption is taken back at once and the
announcer fails with a sentence saying so. Nothing unencrypted is spoken into such a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import numpy as np
from livekit import rtc

from rtcbot.media.participant import Connection
from rtcbot.media.tts import RATE, TtsEngine, TtsError, chime

FRAME_MS = 100
_FRAME = RATE * FRAME_MS // 1000
TRACK_NAME = "announcer"


class UnencryptedInEncryptedCall(RuntimeError):
    """The announcer's track would have gone out unencrypted into an encrypted call."""

    @property
    def message(self) -> str:
        return str(self)


class Announcer:
    def __init__(
        self,
        participant: Connection,
        engine: TtsEngine | None,
        log: logging.Logger | None = None,
        *,
        join_chime: bool = False,
        listener_wait: float = 2.0,
        volume: float = 1.0,
    ) -> None:
        self.participant = participant
        self.engine = engine
        self.log = log or participant.log
        self.join_chime = join_chime
        self.listener_wait = listener_wait
        self.volume = volume
        self._source: rtc.AudioSource | None = None
        self._publication: rtc.LocalTrackPublication | None = None
        self._room: rtc.Room | None = None
        self._speak_lock = asyncio.Lock()
        self._closed = False
        participant.on_reconnected.add(self._republish)

    @property
    def closed(self) -> bool:
        """Closed, or its connection ended for good (the SFU closed the room, or gave up)."""
        return self._closed or self.participant.state in ("closed", "failed")

    @property
    def published(self) -> bool:
        return self._publication is not None

    async def connect(self) -> None:
        """Join the room and publish the microphone track (plus the join chime if enabled)."""
        room = await self.participant.connect(auto_subscribe=False)
        await self._publish(room)
        if self.join_chime:
            await self.play(chime())

    async def say(self, text: str) -> float:
        """Speak `text` (a chime if there is no engine or it fails); returns seconds spoken."""
        samples: np.ndarray | None = None
        if self.engine is not None:
            try:
                samples = await self.engine.synthesize(text)
            except TtsError as exc:
                self.log.warning("Speech synthesis failed, playing a chime: %s", exc.message)
        if samples is None or not len(samples):
            samples = chime()
        return await self.play(samples)

    async def play(self, samples: np.ndarray) -> float:
        """Publish int16 mono 48 kHz samples; returns their duration once played out."""
        async with self._speak_lock:
            source, pub = self._source, self._publication
            if source is None or pub is None or self._closed:
                raise RuntimeError("The announcer is not connected.")
            if self.listener_wait > 0:
                # The first announcement right after joining would otherwise go to nobody.
                with contextlib.suppress(TimeoutError, Exception):
                    await asyncio.wait_for(pub.wait_for_subscription(), self.listener_wait)
            pcm = samples.astype(np.int16, copy=False)
            if self.volume != 1.0:
                scaled = pcm.astype(np.float32) * self.volume
                pcm = np.clip(scaled, -32768, 32767).astype(np.int16)
            for start in range(0, len(pcm), _FRAME):
                chunk = pcm[start : start + _FRAME]
                if len(chunk) < _FRAME:
                    chunk = np.concatenate([chunk, np.zeros(_FRAME - len(chunk), np.int16)])
                frame = rtc.AudioFrame(chunk.tobytes(), RATE, 1, _FRAME)
                if self._source is not source:  # the connection was replaced mid-sentence
                    break
                try:
                    await source.capture_frame(frame)
                except Exception:
                    if self._source is source:
                        raise
                    break  # the old source was closed while we were feeding it
            if self._source is source:
                await source.wait_for_playout()
            return len(pcm) / RATE

    async def close(self) -> None:
        self._closed = True
        self.participant.on_reconnected.remove(self._republish)
        source, self._source = self._source, None
        pub, self._publication = self._publication, None
        room, self._room = self._room, None
        if source is not None:
            source.clear_queue()
        if pub is not None and room is not None and room.isconnected():
            with contextlib.suppress(Exception):
                await room.local_participant.unpublish_track(pub.sid)
        await self.participant.close()
        if source is not None:
            with contextlib.suppress(Exception):
                await source.aclose()

    async def _publish(self, room: rtc.Room) -> None:
        source = rtc.AudioSource(RATE, 1, queue_size_ms=1000)
        track = rtc.LocalAudioTrack.create_audio_track(TRACK_NAME, source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE, dtx=True)
        try:
            pub = await room.local_participant.publish_track(track, options)
            if getattr(self.participant, "frame_keys", None) is not None and (
                pub.encryption_type == rtc.EncryptionType.NONE
            ):
                with contextlib.suppress(Exception):
                    await room.local_participant.unpublish_track(pub.sid)
                raise UnencryptedInEncryptedCall(
                    "This call is end-to-end encrypted, but my microphone track was not: I took "
                    "it back and say nothing here."
                )
        except Exception:
            with contextlib.suppress(Exception):
                await source.aclose()
            raise
        old, self._source, self._publication = self._source, source, pub
        self._room = room
        if old is not None:
            with contextlib.suppress(Exception):
                await old.aclose()

    async def _republish(self, room: rtc.Room) -> None:
        if self._closed:
            return
        try:
            await self._publish(room)
        except Exception:
            self.log.exception("Could not publish the announcer track after reconnecting")
