"""A recording's segments: one per uninterrupted SFU connection, each with its own files
(`…-part2` after a lost connection), all written on the recording's writer thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from .audio_files import RATE, SegmentWriter, WrittenFile
from .recording_result import RecordedFile, recorded_file
from .write_queue import WriteQueue


@dataclass
class Segment:
    part: int
    writer: SegmentWriter
    t0: float  # loop time of sample 0
    has_data: bool = False
    closing: bool = False
    end: int | None = None
    close_future: asyncio.Future[list[WrittenFile]] | None = None


class Segments:
    def __init__(
        self,
        new_writer: Callable[[int], SegmentWriter],
        writes: WriteQueue,
        now: Callable[[], float],
        log: logging.Logger,
    ) -> None:
        self.new_writer = new_writer
        self.writes = writes
        self.now = now
        self.log = log
        self.all: list[Segment] = []

    @property
    def current(self) -> Segment:
        return self.all[-1]

    @property
    def last(self) -> Segment | None:
        return self.all[-1] if self.all else None

    def begin(self) -> Segment:
        """The next segment (the first one, or the one after a closed connection)."""
        part = self.all[-1].part + 1 if self.all else 1
        self.all.append(Segment(part, self.new_writer(part), self.now()))
        return self.all[-1]

    def pos(self, seg: Segment, at: float | None = None) -> int:
        """The sample position `at` (now) on the segment's time axis."""
        return max(0, int(((self.now() if at is None else at) - seg.t0) * RATE))

    def close(self, seg: Segment, end: int) -> asyncio.Future[list[WrittenFile]]:
        """Finish the segment's files at sample `end` (once; later calls share the result)."""
        if seg.close_future is None:
            seg.closing = True
            seg.end = end
            fut = self.writes.submit(seg.writer.close, end if seg.has_data else None)
            if fut is None:  # executor already gone: close inline
                done: asyncio.Future[list[WrittenFile]] = (
                    asyncio.get_running_loop().create_future()
                )
                done.set_result(seg.writer.close(end))
                fut = done
            seg.close_future = fut
        return seg.close_future

    def advance(self, mix_delay_s: float, flush: bool) -> None:
        """Mix what every stream has delivered up to `mix_delay_s` ago; flush now and then."""
        seg = self.current
        until = self.pos(seg) - int(mix_delay_s * RATE)
        if until > 0:
            self.writes.submit(seg.writer.advance_mix, until)
        if flush:
            self.writes.submit(seg.writer.flush)

    async def finish(
        self, end: int, identities: dict[str, str], started_at: float | None
    ) -> list[RecordedFile]:
        """Close every segment (the current one at `end`) and list the files written."""
        files: list[RecordedFile] = []
        last = self.last
        for s in self.all:
            closing = self.close(s, end if s is last else self.pos(s))
            try:
                written = await closing
            except Exception as exc:
                self.writes.errors.append(f"segment {s.part}: {type(exc).__name__}: {exc}")
                self.log.exception("Finishing segment %d failed", s.part)
                written = s.writer.files()
            offset = s.t0 - (started_at or s.t0)
            files.extend(
                recorded_file(s.part, w, identities.get(w.key or ""), offset) for w in written
            )
        return files

    def with_data(self) -> int:
        return sum(1 for s in self.all if s.has_data)

    def bytes_written(self) -> int:
        size = 0
        for s in self.all:
            with contextlib.suppress(Exception):
                size += s.writer.bytes_written()
        return size

    def dropped_samples(self) -> int:
        return sum(s.writer.dropped_samples + s.writer.mix_dropped_samples for s in self.all)
