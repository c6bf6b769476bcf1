"""Recording a call: every remote audio track to its own Ogg/Opus file, plus a mix.

It joins through a `Connection` (its own `Participant`, or a role on the bot's one participant:
presence.py), subscribes by hand to every audio track, reads each with 100 ms frames (the
per-frame Python cost dominates) and unsubscribes when it stops. Chunks are placed on the
segment's time axis (late joiners start with silence, gaps are padded) and written by
`audio_files.SegmentWriter` in one worker thread, so Opus encoding never blocks the loop.

A segment (segments.py) is one uninterrupted SFU connection (after a loss: `…-part2`);
other SFUs' people join it through `add_source` (other_sfus.py).

Findings from the real server that shaped this (LiveKit 1.13, SDK 1.2): a remote stream
delivers 100 ms frames on a steady clock, zeros while the sender is muted; after an
unpublish or when the sender leaves, the stream neither ends nor stops at once, and a
republished track may feed the *old* stream again. Readers are therefore closed explicitly
on `track_unsubscribed` / `participant_disconnected`, never left to end on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from livekit import rtc

from rtcbot.media.audio_files import (
    RATE,
    SegmentWriter,
    StreamClock,
)
from rtcbot.media.decryption_gate import DecryptionGate
from rtcbot.media.empty_room import EmptyRoomWatch
from rtcbot.media.other_sfus import OtherSfus, everyone
from rtcbot.media.participant import Connection, State
from rtcbot.media.recorder_hooks import (
    RecorderHooks,
    RecorderLimits,
    RecorderTuning,
    Standalone,
)
from rtcbot.media.recording_result import (
    RecorderState,
    RecordingResult,
    RecordingStatus,
    StopReason,
    speakers_of,
)
from rtcbot.media.segments import Segment, Segments
from rtcbot.media.speaker_labels import SpeakerLabels
from rtcbot.media.stream_close import close_audio_stream
from rtcbot.media.track_limit import TrackLimit
from rtcbot.media.track_subscriptions import AudioSubscriptions, RoomHandlers
from rtcbot.media.write_queue import WriteQueue
from rtcbot.tasks import cancel_and_wait

FRAME_MS = 100
NO_LIMITS = RecorderLimits()
DEFAULT_TUNING = RecorderTuning()
FRAME_SAMPLES = RATE * FRAME_MS // 1000
# Sees every frame written (captions, who spoke when): (stream key, LiveKit identity, display
# name, unix time the frame starts, int16 48 kHz mono). On the event loop: it only buffers.
AudioTap = Callable[[str, str, str, float, np.ndarray], None]

_SOURCE_SUFFIX = {rtc.TrackSource.SOURCE_SCREENSHARE_AUDIO: "screenshare"}
# Frames buffered per stream before the SDK drops the oldest (bounded memory if stalled).
_STREAM_CAPACITY = 50


@dataclass
class _Reader:
    sid: str
    key: str
    identity: str
    stream: rtc.AudioStream
    segment: Segment
    room: rtc.Room
    clock: StreamClock
    task: asyncio.Task[None] | None = None


class Recorder:
    """Records one LiveKit room until `stop()`, `max_seconds`, or the SFU is gone for good."""

    def __init__(
        self,
        participant: Connection,
        directory: Path,
        prefix: str,
        hooks: RecorderHooks | None = None,
        *,
        limits: RecorderLimits = NO_LIMITS,
        log: logging.Logger | None = None,
        taps: list[AudioTap] | None = None,
        resolve_timeout: float = 3.0,
        tuning: RecorderTuning = DEFAULT_TUNING,
    ) -> None:
        self.participant = participant
        self.directory = Path(directory)
        self.prefix = prefix
        # Every question the recorder has for whoever runs it (names, who counts, the end).
        self.hooks: RecorderHooks = hooks or Standalone()
        self.log = log or participant.log
        self.max_seconds = limits.max_seconds
        self.taps = taps if taps is not None else []
        self._limit = TrackLimit(limits.max_tracks, self.log)  # speakers beyond: not recorded
        self.tuning = tuning
        self.state: RecorderState = "idle"
        self.started_at: float | None = None  # loop time
        self.started_wall: float | None = None
        self.media_gone_at: float | None = None  # loop time a loss of the SFU was noticed
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writes = WriteQueue(self.log)
        self._segments = Segments(self._new_writer, self._writes, self._now, self.log)
        self._readers: dict[str, _Reader] = {}
        self._labels = SpeakerLabels(self.hooks, self.log, resolve_timeout)
        self._ticker: asyncio.Task[None] | None = None
        self._stop_task: asyncio.Task[RecordingResult] | None = None
        self._empty = EmptyRoomWatch(
            self._rooms,
            self.hooks.ignores,
            lambda: self.state == "recording",
            lambda: self._call(self.hooks.on_empty),
            self.log,
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing_readers: set[asyncio.Task[None]] = set()
        # Room event handlers this recorder registered (removed when it stops: the room may
        # stay connected for the bot's other role) and the publications it subscribed to.
        self._handlers = RoomHandlers()
        self._subscriptions = AudioSubscriptions(
            lambda p: not self._excluded(p),
            lambda: self.state in ("recording", "interrupted"),
            self.log,
        )
        self._home: rtc.Room | None = None
        # Encrypted calls: a speaker is written only while it decrypts (decryption_gate.py).
        self._gate = DecryptionGate(
            lambda: getattr(participant, "frame_keys", None), FRAME_MS / 1000
        )
        self._sources = OtherSfus(
            watch=self._watch,
            close_readers_of=self._close_readers_of,
            read_existing=self._read_existing,
            recording=lambda: self.state,
            spawn=self._spawn,
            log=self.log,
        )

    # -- public ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect and start recording (raises SfuConnectError / SfuAuthError)."""
        if self.state != "idle":
            raise RuntimeError("A Recorder can be started once.")
        self._loop = asyncio.get_running_loop()
        self._writes.open()
        self.started_at = self._loop.time()
        self.started_wall = time.time()
        self._segments.begin()
        self.state = "recording"
        try:
            room = await self.participant.connect(auto_subscribe=False, setup=self._setup_room)
        except BaseException:
            self.state = "stopped"
            self._handlers.remove_all()
            self._writes.shutdown(wait=False)
            raise
        self.participant.on_lost.add(self._on_lost)
        self.participant.on_reconnected.add(self._on_reconnected)
        self.participant.on_state.add(self._on_participant_state)
        self._ticker = asyncio.ensure_future(self._tick_loop())
        self._subscriptions.existing(room)
        self._empty.check(room)

    def status(self) -> RecordingStatus:
        now = self._now()
        seg = self._segments.last
        names = sorted(
            {
                self._labels[r.key][0]
                for r in self._readers.values()
                if not self.hooks.withheld(r.identity)
            }
        )
        return RecordingStatus(
            state=self.state,
            duration_s=max(0.0, now - self.started_at) if self.started_at is not None else 0.0,
            segment=seg.part if seg else 0,
            participants=names,
            bytes_written=self._segments.bytes_written(),
            dropped_frames=self._dropped_frames(),
        )

    async def stop(self, reason: StopReason = "stopped") -> RecordingResult:
        """Finish all files and leave the room; later calls return the same result."""
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop(reason))
        return await asyncio.shield(self._stop_task)

    async def add_source(self, conn: Connection, admits: Callable[[str], bool] = everyone) -> None:
        """Also record the people who publish on another SFU of the call (other_sfus.py):
        the identities there that `admits` lets in."""
        await self._sources.add(conn, admits)

    def recheck_source(self, conn: Connection) -> None:
        """Who that source admits may have changed (memberships did): read it again."""
        self._sources.recheck(conn)

    async def remove_source(self, conn: Connection) -> None:
        await self._sources.remove(conn)

    @property
    def sources(self) -> int:
        """SFUs recorded besides the bot's own."""
        return len(self._sources)

    # -- room events -----------------------------------------------------------------------
    def _setup_room(self, room: rtc.Room) -> None:
        seg = self._segments.current
        if seg.closing:
            seg = self._segments.begin()
        elif not seg.has_data:
            seg.t0 = self._now()  # a failed attempt before: start the clock now
        self._home = room
        self._watch(room)

    def _watch(self, room: rtc.Room) -> None:
        on = self._handlers.on
        on(room, "track_published", self._subscriptions.want)
        on(room, "track_subscribed", lambda t, pub, p: self._on_track(room, t, pub, p))
        on(room, "track_unsubscribed", lambda t, pub, p: self._close_reader(pub.sid))
        on(room, "participant_disconnected", lambda p: self._on_participant_left(room, p))
        on(room, "participant_connected", self._empty.joined)

    def _excluded(self, p: rtc.RemoteParticipant) -> bool:
        return self.hooks.excludes(p) or not self._sources.admits(p)

    def _on_track(
        self,
        room: rtc.Room,
        track: rtc.Track,
        pub: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        if self._excluded(participant):
            return  # e.g. the bot's own announcer, or someone another SFU made up
        # "interrupted": a new room's tracks can arrive before on_reconnected has run.
        if track.kind != rtc.TrackKind.KIND_AUDIO or self.state not in (
            "recording",
            "interrupted",
        ):
            return
        seg = self._segments.current
        if seg.closing:
            return
        self._close_reader(pub.sid)
        suffix = _SOURCE_SUFFIX.get(pub.source)
        key = participant.identity + (f"/{suffix}" if suffix else "")
        if self._limit.refuses(
            key, self._labels.labels, lambda: self._labels.names_of(participant)[0]
        ):
            self._subscriptions.refuse(pub)
            return
        if key not in self._labels:
            self._labels.add(key, participant, suffix)
        self._gate.track(key, pub.encryption_type != rtc.EncryptionType.NONE)
        stream = rtc.AudioStream(
            track,
            sample_rate=RATE,
            num_channels=1,
            frame_size_ms=FRAME_MS,
            capacity=_STREAM_CAPACITY,
        )
        reader = _Reader(
            pub.sid,
            key,
            participant.identity,
            stream,
            seg,
            room,
            StreamClock(RATE, self.tuning.gap_threshold),
        )
        reader.task = asyncio.ensure_future(self._read(reader))
        self._readers[pub.sid] = reader
        self._writes.streams(len(self._readers))
        self.log.debug("Recording %s (track %s)", key, pub.sid)

    def _close_readers_of(self, room: rtc.Room | None) -> None:
        for sid in [s for s, r in self._readers.items() if r.room is room]:
            self._close_reader(sid)

    def _rooms(self) -> list[rtc.Room]:
        return ([self._home] if self._home is not None else []) + self._sources.rooms()

    def _on_participant_left(self, room: rtc.Room, p: rtc.RemoteParticipant) -> None:
        for sid in [s for s, r in self._readers.items() if r.identity == p.identity]:
            self._close_reader(sid)
        self._empty.check(room, leaving=p.identity)

    def _on_lost(self, _message: str) -> None:
        if self.state != "recording":
            return
        self.state = "interrupted"
        seg = self._segments.current
        self._segments.close(seg, self._segments.pos(seg))
        for sid in list(self._readers):
            self._close_reader(sid)

    async def _on_reconnected(self, room: rtc.Room) -> None:
        if self.state == "interrupted":
            self.state = "recording"
            self.log.info("Recording continues in segment %d", self._segments.current.part)
            self._subscriptions.forget()
            self._subscriptions.existing(room)
            for other in self._sources.rooms():
                self._read_existing(other)
            self._empty.check(room)

    def _read_existing(self, room: rtc.Room) -> None:
        """Read the room's audio again in the current segment: tracks still subscribed get
        a new reader (theirs ended with the old segment), the others are subscribed."""
        for p in list(room.remote_participants.values()):
            for pub in list(p.track_publications.values()):
                if pub.subscribed and pub.track is not None:
                    self._on_track(room, pub.track, pub, p)
                else:
                    self._subscriptions.want(pub, p)

    def _on_participant_state(self, state: State, detail: str | None) -> None:
        # Streams go on with zeros after a loss: only the SDK's notice (seconds later) tells.
        if state in ("reconnecting", "lost"):
            self.media_gone_at = self.media_gone_at or self._now()
        elif state == "connected":
            self.media_gone_at = None
        if self._stop_task is not None or self.state in ("idle", "stopped"):
            return
        if state == "failed":
            self._spawn(self.stop("sfu_lost"))
        elif state == "closed":
            self._spawn(self.stop("room_closed"))

    # -- reading ---------------------------------------------------------------------------
    async def _read(self, reader: _Reader) -> None:
        loop = asyncio.get_running_loop()
        seg = reader.segment
        if self._labels.unresolved(reader.key):
            await self._labels.resolve(reader.key, reader.identity)
        display, device = self._labels[reader.key]
        try:
            async for ev in reader.stream:
                if seg.closing:
                    break
                if not self._gate.allows(reader.key, reader.identity) or self.hooks.withheld(
                    reader.identity
                ):
                    continue
                frame = ev.frame
                samples = np.frombuffer(bytes(frame.data), dtype=np.int16)
                if frame.num_channels != 1:
                    samples = samples[:: frame.num_channels].copy()
                arrival_end = int((loop.time() - seg.t0) * RATE)
                pos = reader.clock.place(arrival_end, len(samples))
                seg.has_data = True
                self._writes.add_chunk(seg.writer.add, reader.key, display, device, pos, samples)
                at = (self.started_wall or 0.0) + seg.t0 - (self.started_at or 0.0) + pos / RATE
                for tap in self.taps:
                    tap(reader.key, reader.identity, display, at, samples)
        except asyncio.CancelledError:
            pass
        except Exception:
            self.log.exception("Reading %s failed", reader.key)

    def _close_reader(self, sid: str) -> None:
        reader = self._readers.pop(sid, None)
        self._writes.streams(len(self._readers))
        if reader is not None:
            task = asyncio.ensure_future(self._finish_reader(reader))
            self._closing_readers.add(task)
            task.add_done_callback(self._closing_readers.discard)

    async def _finish_reader(self, reader: _Reader) -> None:
        if reader.task is not None and not reader.task.done():
            reader.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader.task
        await close_audio_stream(reader.stream)  # bounded: the SDK's close can wait forever

    # -- writing ---------------------------------------------------------------------------
    def _new_writer(self, part: int) -> SegmentWriter:
        return SegmentWriter(
            self.directory,
            self.prefix,
            part=part,
            rate=RATE,
            mix=self.tuning.mix,
            compression_level=self.tuning.compression_level,
            speech_threshold=self.tuning.speech_threshold,
        )

    async def _tick_loop(self) -> None:
        flush_every = max(1, round(2.0 / self.tuning.tick))
        n = 0
        while True:
            await asyncio.sleep(self.tuning.tick)
            n += 1
            if self.state == "recording" and not self._segments.current.closing:
                self._segments.advance(self.tuning.mix_delay, flush=n % flush_every == 0)
            if (
                self.max_seconds is not None
                and self.started_at is not None
                and self._now() - self.started_at >= self.max_seconds
            ):
                self.log.info("Recording reached its maximum of %g s", self.max_seconds)
                self._spawn(self.stop("max_duration"))
                return

    # -- stopping --------------------------------------------------------------------------
    async def _stop(self, reason: StopReason) -> RecordingResult:
        stopped_at = self._now()
        self.state = "stopping"
        seg = self._segments.last
        end = self._segments.pos(seg, stopped_at) if seg is not None else 0
        if seg is not None:
            seg.closing = True  # readers drop whatever arrives from now on
        if self._ticker is not asyncio.current_task():
            await cancel_and_wait(self._ticker)
        for sid in list(self._readers):
            self._close_reader(sid)
        self._unhook()
        self._handlers.remove_all()
        self._subscriptions.drop_all()
        try:
            await self.participant.close()
        except Exception:
            self.log.exception("Leaving the LiveKit room failed")
        await self._sources.close()
        for task in list(self._closing_readers):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        files = await self._segments.finish(end, self._labels.identities, self.started_at)
        self._writes.shutdown(wait=True)
        self.state = "stopped"
        started = self.started_at if self.started_at is not None else stopped_at
        result = RecordingResult(
            files=files,
            duration_ms=int((stopped_at - started) * 1000),
            segments=self._segments.with_data() or 1,
            speakers=speakers_of(files),
            dropped_frames=self._dropped_frames(),
            reason=reason,
            started_at=self.started_wall or time.time(),
            errors=list(self._writes.errors),
            undecrypted={self._labels[k][0]: s for k, s in self._gate.seconds().items()},
            not_recorded=self._limit.names(),
            unencrypted={self._labels[k][0]: s for k, s in self._gate.plain_seconds().items()},
            media_gone_s=None if self.media_gone_at is None else self.media_gone_at - started,
        )
        self.log.info(
            "Recording stopped (%s): %d files, %.1f s, %d bytes",
            *(reason, len(files), result.duration_ms / 1000, result.total_bytes),
        )
        if reason != "stopped":
            self._call(self.hooks.on_stopped, result)
        return result

    def _unhook(self) -> None:
        p = self.participant
        p.on_lost.remove(self._on_lost)
        p.on_reconnected.remove(self._on_reconnected)
        p.on_state.remove(self._on_participant_state)

    # -- helpers ---------------------------------------------------------------------------
    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else time.monotonic()

    def _dropped_frames(self) -> int:
        samples = self._segments.dropped_samples()
        return self._writes.dropped_chunks + math.ceil(samples / FRAME_SAMPLES)

    def _call(self, cb: Callable[..., Any], *args: Any) -> None:
        try:
            result = cb(*args)
            if inspect.isawaitable(result):
                self._spawn(result)
        except Exception:
            self.log.exception("Recorder callback %r failed", cb)

    def _spawn(self, aw: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(aw)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
