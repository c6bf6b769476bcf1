"""Recording a call: every remote audio track to its own Ogg/Opus file, plus a mix.

It joins through a `Connection` (its own `Participant`, or a role on the bot's one participant:
presence.py), subscribes by hand to every audio track, reads each with 100 ms frames (the
per-frame Python cost dominates) and unsubscribes when it stops. Chunks are placed on the
segment's time axis (late joiners start with silence, gaps are padded) and written by
`audio_files.SegmentWriter` in one worker thread, so Opus encoding never blocks the loop.

A segment is one uninterrupted SFU connection. When the connection is lost for good (the
SDK gave up resuming), the segment's files are finished; when `Participant` connects a new
room, a new segment starts with new files named `…-part2`, `…-part3`. In a multi-SFU call
the people on other SFUs are read into the same segment through `add_source` (other_sfus.py).

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from livekit import rtc

from rtcbot.media.audio_files import (
    DEFAULT_COMPRESSION,
    DEFAULT_GAP_THRESHOLD,
    DEFAULT_SPEECH_THRESHOLD,
    RATE,
    SegmentWriter,
    StreamClock,
    WrittenFile,
)
from rtcbot.media.decryption_gate import DecryptionGate
from rtcbot.media.other_sfus import OtherSfus, everyone
from rtcbot.media.participant import Connection, State
from rtcbot.media.recorder_hooks import RecorderHooks, RecorderLimits, Standalone
from rtcbot.media.recording_result import (
    RecordedFile,
    RecorderState,
    RecordingResult,
    RecordingStatus,
    StopReason,
    recorded_file,
    speakers_of,
)
from rtcbot.media.stream_close import close_audio_stream
from rtcbot.media.track_limit import TrackLimit

__all__ = ["Recorder", "RecordingResult"]

FRAME_MS = 100
NO_LIMITS = RecorderLimits()
FRAME_SAMPLES = RATE * FRAME_MS // 1000
# Sees every frame that is written (live captions, who spoke when): (stream key, LiveKit
# identity, display name, unix time the frame starts, int16 48 kHz mono). On the event loop:
# it must only buffer.
AudioTap = Callable[[str, str, str, float, np.ndarray], None]

_SOURCE_SUFFIX = {
    rtc.TrackSource.SOURCE_SCREENSHARE_AUDIO: "screenshare",
}
# Frames buffered per stream before the SDK drops the oldest (bounded memory if stalled).
_STREAM_CAPACITY = 50
# Writes queued for the worker thread before new chunks are dropped (and counted).
_MAX_PENDING = 600


@dataclass
class _Segment:
    part: int
    writer: SegmentWriter
    t0: float  # loop time of sample 0
    has_data: bool = False
    closing: bool = False
    end: int | None = None
    close_future: asyncio.Future[list[WrittenFile]] | None = None


@dataclass
class _Reader:
    sid: str
    key: str
    identity: str
    stream: rtc.AudioStream
    segment: _Segment
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
        mix: bool = True,
        compression_level: float | None = DEFAULT_COMPRESSION,
        speech_threshold: float = DEFAULT_SPEECH_THRESHOLD,
        gap_threshold: float = DEFAULT_GAP_THRESHOLD,
        mix_delay: float = 1.5,
        tick: float = 0.5,
    ) -> None:
        self.participant = participant
        self.directory = Path(directory)
        self.prefix = prefix
        # Every question the recorder has for whoever runs it (names, who counts, the end).
        self.hooks: RecorderHooks = hooks or Standalone()
        self.resolve_timeout = resolve_timeout
        self.log = log or participant.log
        self.max_seconds = limits.max_seconds
        self.taps = taps if taps is not None else []
        self._limit = TrackLimit(limits.max_tracks, self.log)  # speakers beyond: not recorded
        self.mix = mix
        self.compression_level = compression_level
        self.speech_threshold = speech_threshold
        self.gap_threshold = gap_threshold
        self.mix_delay = mix_delay
        self.tick = tick
        self.state: RecorderState = "idle"
        self.started_at: float | None = None  # loop time
        self.started_wall: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._segments: list[_Segment] = []
        self._readers: dict[str, _Reader] = {}
        self._labels: dict[str, tuple[str, str]] = {}
        self._unresolved: dict[str, str] = {}  # key → source suffix, names still to look up
        self._key_identity: dict[str, str] = {}
        self._pending = 0
        self._dropped_chunks = 0
        self._errors: list[str] = []
        self._ticker: asyncio.Task[None] | None = None
        self._stop_task: asyncio.Task[RecordingResult] | None = None
        self._empty_fired = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing_readers: set[asyncio.Task[None]] = set()
        # Room event handlers this recorder registered (removed when it stops: the room may
        # stay connected for the bot's other role) and the publications it subscribed to.
        self._handlers: list[tuple[rtc.Room, str, Callable[..., Any]]] = []
        self._subscribed: dict[str, rtc.RemoteTrackPublication] = {}
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
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rtcbot-recorder")
        self.started_at = self._loop.time()
        self.started_wall = time.time()
        self._segments.append(self._new_segment(1))
        self.state = "recording"
        try:
            room = await self.participant.connect(auto_subscribe=False, setup=self._setup_room)
        except BaseException:
            self.state = "stopped"
            self._unregister()
            self._executor.shutdown(wait=False)
            raise
        self.participant.on_lost.append(self._on_lost)
        self.participant.on_reconnected.append(self._on_reconnected)
        self.participant.on_state.append(self._on_participant_state)
        self._ticker = asyncio.ensure_future(self._tick_loop())
        self._subscribe_existing(room)
        self._check_empty(room)

    def status(self) -> RecordingStatus:
        now = self._now()
        seg = self._segments[-1] if self._segments else None
        size = 0
        for s in self._segments:
            with contextlib.suppress(Exception):
                size += s.writer.bytes_written()
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
            bytes_written=size,
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
        seg = self._segments[-1]
        if seg.closing:
            seg = self._new_segment(seg.part + 1)
            self._segments.append(seg)
        elif not seg.has_data:
            seg.t0 = self._now()  # a failed attempt before: start the clock now
        self._home = room
        self._watch(room)

    def _watch(self, room: rtc.Room) -> None:
        self._on(room, "track_published", lambda pub, p: self._want(pub, p))
        self._on(room, "track_subscribed", lambda t, pub, p: self._on_track(room, t, pub, p))
        self._on(room, "track_unsubscribed", lambda t, pub, p: self._close_reader(pub.sid))
        self._on(room, "participant_disconnected", lambda p: self._on_participant_left(room, p))
        self._on(room, "participant_connected", lambda p: self._on_participant_joined(p))

    def _on(self, room: rtc.Room, event: str, handler: Callable[..., Any]) -> None:
        room.on(event, handler)  # type: ignore[arg-type]
        self._handlers.append((room, event, handler))

    def _unregister(self) -> None:
        for room, event, handler in self._handlers:
            with contextlib.suppress(Exception):
                room.off(event, handler)  # type: ignore[arg-type]
        self._handlers.clear()

    def _subscribe_existing(self, room: rtc.Room) -> None:
        """Tracks published before this recorder was set up (no `track_published` for them)."""
        for p in list(room.remote_participants.values()):
            for pub in list(p.track_publications.values()):
                self._want(pub, p)

    def _want(self, pub: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant) -> None:
        """Subscribe to an audio track while recording (never to video)."""
        if pub.kind != rtc.TrackKind.KIND_AUDIO or self.state not in ("recording", "interrupted"):
            return
        if self._excluded(participant):
            return
        self._subscribed[pub.sid] = pub
        if not pub.subscribed:
            try:
                pub.set_subscribed(True)
            except Exception:
                self.log.exception("subscribing to %s of %s failed", pub.sid, participant.identity)

    def _excluded(self, p: rtc.RemoteParticipant) -> bool:
        return self.hooks.excludes(p) or not self._sources.admits(p)

    def _unsubscribe_all(self) -> None:
        subscribed, self._subscribed = self._subscribed, {}
        for pub in subscribed.values():
            with contextlib.suppress(Exception):
                pub.set_subscribed(False)

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
        seg = self._segments[-1]
        if seg.closing:
            return
        self._close_reader(pub.sid)
        suffix = _SOURCE_SUFFIX.get(pub.source)
        key = participant.identity + (f"/{suffix}" if suffix else "")
        if self._limit.refuses(key, self._labels, lambda: self._names(participant)[0]):
            self._subscribed.pop(pub.sid, None)
            with contextlib.suppress(Exception):
                pub.set_subscribed(False)  # no bandwidth or decoding for it
            return
        if key not in self._labels:
            display, device = self._names(participant)
            self._labels[key] = (display, f"{device}-{suffix}" if suffix else device)
            self._unresolved[key] = suffix or ""
            self._key_identity[key] = participant.identity
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
            StreamClock(RATE, self.gap_threshold),
        )
        reader.task = asyncio.ensure_future(self._read(reader))
        self._readers[pub.sid] = reader
        self.log.debug("Recording %s (track %s)", key, pub.sid)

    def _close_readers_of(self, room: rtc.Room | None) -> None:
        for sid in [s for s, r in self._readers.items() if r.room is room]:
            self._close_reader(sid)

    def _rooms(self) -> list[rtc.Room]:
        return ([self._home] if self._home is not None else []) + self._sources.rooms()

    def _on_participant_left(self, room: rtc.Room, p: rtc.RemoteParticipant) -> None:
        for sid in [s for s, r in self._readers.items() if r.identity == p.identity]:
            self._close_reader(sid)
        self._check_empty(room, leaving=p.identity)

    def _on_participant_joined(self, p: rtc.RemoteParticipant) -> None:
        if not self.hooks.ignores(p):
            self._empty_fired = False

    def _check_empty(self, room: rtc.Room, leaving: str | None = None) -> None:
        humans = [
            p
            for r in self._rooms()
            for p in r.remote_participants.values()
            if p.identity != leaving and not self.hooks.ignores(p)
        ]
        if humans:
            self._empty_fired = False
            return
        if self._empty_fired or self.state != "recording":
            return
        # When the SFU itself goes away every participant vanishes at once; that is a lost
        # connection (a new segment follows), not people leaving: only while connected.
        self._confirm_empty(room)

    def _confirm_empty(self, room: rtc.Room) -> None:
        if self._empty_fired or self.state != "recording":
            return
        if room.connection_state != rtc.ConnectionState.CONN_CONNECTED:
            return
        rooms = self._rooms()
        if any(not self.hooks.ignores(p) for r in rooms for p in r.remote_participants.values()):
            return
        self._empty_fired = True
        self.log.info("Nobody is left in the recorded room")
        self._call(self.hooks.on_empty)

    def _on_lost(self, _message: str) -> None:
        if self.state != "recording":
            return
        self.state = "interrupted"
        seg = self._segments[-1]
        self._close_segment(seg, self._pos(seg))
        for sid in list(self._readers):
            self._close_reader(sid)

    async def _on_reconnected(self, room: rtc.Room) -> None:
        if self.state == "interrupted":
            self.state = "recording"
            self.log.info("Recording continues in segment %d", self._segments[-1].part)
            self._subscribed.clear()  # the old room's publications
            self._subscribe_existing(room)
            for other in self._sources.rooms():
                self._read_existing(other)
            self._check_empty(room)

    def _read_existing(self, room: rtc.Room) -> None:
        """Read the room's audio again in the current segment: tracks still subscribed get
        a new reader (theirs ended with the old segment), the others are subscribed."""
        for p in list(room.remote_participants.values()):
            for pub in list(p.track_publications.values()):
                if pub.subscribed and pub.track is not None:
                    self._on_track(room, pub.track, pub, p)
                else:
                    self._want(pub, p)

    def _on_participant_state(self, state: State, detail: str | None) -> None:
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
        if reader.key in self._unresolved:
            await self._resolve(reader)
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
                self._submit(
                    seg.writer.add, reader.key, display, device, pos, samples, droppable=True
                )
                at = (self.started_wall or 0.0) + seg.t0 - (self.started_at or 0.0) + pos / RATE
                for tap in self.taps:
                    tap(reader.key, reader.identity, display, at, samples)
        except asyncio.CancelledError:
            pass
        except Exception:
            self.log.exception("Reading %s failed", reader.key)

    def _close_reader(self, sid: str) -> None:
        reader = self._readers.pop(sid, None)
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
    def _new_segment(self, part: int) -> _Segment:
        writer = SegmentWriter(
            self.directory,
            self.prefix,
            part=part,
            rate=RATE,
            mix=self.mix,
            compression_level=self.compression_level,
            speech_threshold=self.speech_threshold,
        )
        return _Segment(part, writer, self._now())

    def _submit(
        self, fn: Callable[..., Any], *args: Any, droppable: bool = False
    ) -> asyncio.Future[Any] | None:
        if self._executor is None or self._loop is None:
            return None
        if droppable and self._pending >= _MAX_PENDING:
            self._dropped_chunks += 1
            return None
        self._pending += 1
        fut = self._loop.run_in_executor(self._executor, fn, *args)
        fut.add_done_callback(self._written)
        return fut

    def _written(self, fut: asyncio.Future[Any]) -> None:
        self._pending -= 1
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            text = f"{type(exc).__name__}: {exc}"
            if text not in self._errors:
                self._errors.append(text)
                self.log.error("Writing the recording failed: %s", text)

    def _close_segment(self, seg: _Segment, end: int) -> asyncio.Future[list[WrittenFile]]:
        if seg.close_future is None:
            seg.closing = True
            seg.end = end
            fut = self._submit(seg.writer.close, end if seg.has_data else None)
            if fut is None:  # executor already gone: close inline
                done: asyncio.Future[list[WrittenFile]] = (
                    asyncio.get_running_loop().create_future()
                )
                done.set_result(seg.writer.close(end))
                fut = done
            seg.close_future = fut
        return seg.close_future

    async def _tick_loop(self) -> None:
        flush_every = max(1, round(2.0 / self.tick))
        n = 0
        while True:
            await asyncio.sleep(self.tick)
            n += 1
            seg = self._segments[-1]
            if self.state == "recording" and not seg.closing:
                until = self._pos(seg) - int(self.mix_delay * RATE)
                if until > 0:
                    self._submit(seg.writer.advance_mix, until)
                if n % flush_every == 0:
                    self._submit(seg.writer.flush)
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
        seg = self._segments[-1] if self._segments else None
        end = self._pos(seg, stopped_at) if seg is not None else 0
        if seg is not None:
            seg.closing = True  # readers drop whatever arrives from now on
        if self._ticker is not None and self._ticker is not asyncio.current_task():
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._ticker
        for sid in list(self._readers):
            self._close_reader(sid)
        self._unhook()
        self._unregister()
        self._unsubscribe_all()
        try:
            await self.participant.close()
        except Exception:
            self.log.exception("Leaving the LiveKit room failed")
        await self._sources.close()
        for task in list(self._closing_readers):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        files: list[RecordedFile] = []
        for s in self._segments:
            closing = self._close_segment(s, end if s is seg else self._pos(s))
            try:
                written = await closing
            except Exception as exc:
                self._errors.append(f"segment {s.part}: {type(exc).__name__}: {exc}")
                self.log.exception("Finishing segment %d failed", s.part)
                written = s.writer.files()
            offset = s.t0 - (self.started_at or s.t0)
            ids = self._key_identity
            files.extend(recorded_file(s.part, w, ids.get(w.key or ""), offset) for w in written)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self.state = "stopped"
        started = self.started_at if self.started_at is not None else stopped_at
        result = RecordingResult(
            files=files,
            duration_ms=int((stopped_at - started) * 1000),
            segments=sum(1 for s in self._segments if s.has_data) or 1,
            speakers=speakers_of(files),
            dropped_frames=self._dropped_frames(),
            reason=reason,
            started_at=self.started_wall or time.time(),
            errors=list(self._errors),
            undecrypted={self._labels[k][0]: s for k, s in self._gate.seconds().items()},
            not_recorded=self._limit.names(),
            unencrypted={self._labels[k][0]: s for k, s in self._gate.plain_seconds().items()},
        )
        self.log.info(
            "Recording stopped (%s): %d files, %.1f s, %d bytes",
            reason,
            len(files),
            result.duration_ms / 1000,
            result.total_bytes,
        )
        if reason != "stopped":
            self._call(self.hooks.on_stopped, result)
        return result

    def _unhook(self) -> None:
        p = self.participant
        with contextlib.suppress(ValueError):
            p.on_lost.remove(self._on_lost)
        with contextlib.suppress(ValueError):
            p.on_reconnected.remove(self._on_reconnected)
        with contextlib.suppress(ValueError):
            p.on_state.remove(self._on_participant_state)

    # -- helpers ---------------------------------------------------------------------------
    async def _resolve(self, reader: _Reader) -> None:
        """Names the sync `name_for` could not know yet (a late joiner whose display name
        was never looked up): the stream buffers its frames meanwhile."""
        suffix = self._unresolved.pop(reader.key, None)
        if suffix is None:
            return
        try:
            async with asyncio.timeout(self.resolve_timeout):
                found = await self.hooks.resolve_name(reader.identity)
        except Exception as e:
            self.log.info("could not look up the name of %s: %s", reader.identity, e)
            return
        display, device = found or ("", "")
        if display:
            device = device or self._labels[reader.key][1]
            self._labels[reader.key] = (display, f"{device}-{suffix}" if suffix else device)

    def _names(self, participant: rtc.RemoteParticipant) -> tuple[str, str]:
        try:
            known = self.hooks.name_for(participant.identity)
        except Exception:
            self.log.exception("name_for(%r) failed", participant.identity)
            known = None
        if known is not None:
            display, device = known
            return display or participant.identity, device or ""
        return participant.name or participant.identity, ""

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else time.monotonic()

    def _pos(self, seg: _Segment, at: float | None = None) -> int:
        return max(0, int(((self._now() if at is None else at) - seg.t0) * RATE))

    def _dropped_frames(self) -> int:
        samples = sum(
            s.writer.dropped_samples + s.writer.mix_dropped_samples for s in self._segments
        )
        return self._dropped_chunks + math.ceil(samples / FRAME_SAMPLES)

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
