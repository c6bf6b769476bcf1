"""The transcript after a recording: each speaker's file transcribed, ONE transcript posted.

`TranscriptJobs.after_recording` is a `recording_posted` observer of the media sessions (recording/shared.py): it runs once
the summary and the files are in the room, and before a retention of 0 deletes the files. In
the summary's thread it posts one progress message ("📝 Transcribing… 35 %", edited in place
and at last replaced by the outcome), the transcript (lines with the speaker and the time)
and the same as `.txt` and WebVTT attachments.

Each speaker has a file of their own, so every word is attributed without guessing. Files
are transcribed through the shared `SpeechToText`: its `max_jobs` slots go to the waiting
rooms in turn (fair_slots.py), and at most `max_queued_per_room` recordings of a room
(`max_queued` in all) wait or run; one more is told in its thread that it gets no transcript. A plugin stop cancels a running job at once (the worker thread gives up
at its next 30 s window) and says so in the progress message.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mautrix.types import EventID, FileInfo, MediaMessageEventContent, MessageType, RoomID

from ..commands.features import feature_enabled
from ..context import BotContext
from ..matrix.attachments import upload_for_room
from ..matrix.notices import NAME_LIMIT, in_thread, md_escape
from ..media.recording_result import RecordedFile, RecordingResult
from ..recording.posts import fmt_s
from ..tasks import cancel_and_wait
from .engine import ModelUnavailable, SpeechToText, Word
from .lines import merge_lines, render_message, render_text, render_vtt, speaker_lines
from .search import IndexedLine, TranscriptSearch

if TYPE_CHECKING:
    from .settings import TranscriptSettings

PROGRESS_EVERY_S = 4.0  # at most one edit of the progress message this often
STOP_WAIT_S = 5.0  # a stop waits this long for the cancelled jobs to say so
FEATURE = "transcript"


AfterTranscript = Callable[[RoomID, EventID, EventID], Coroutine[Any, Any, None]]


class TranscriptJobs:
    def __init__(
        self, ctx: BotContext, speech: SpeechToText, search: TranscriptSearch | None = None
    ) -> None:
        self.ctx = ctx
        self.speech = speech
        self.search = search  # the room's search index gets each posted transcript
        # (room, recording, the thread's last event): run after a transcript is posted.
        self.after_transcript: AfterTranscript | None = None
        self.log = ctx.logger("transcripts")
        self._running: set[asyncio.Task[None]] = set()
        self._queued: Counter[str] = Counter()  # room → recordings waiting or transcribing
        self._closed = False

    async def enabled_in(self, room_id: str) -> tuple[bool, str]:
        """Whether this room gets transcripts, and what decided it."""
        default = self.ctx.settings().transcripts.enabled
        return await feature_enabled(self.ctx, room_id, FEATURE, default)

    async def after_recording(
        self, room_id: RoomID, result: RecordingResult, summary: EventID
    ) -> None:
        if self._closed or not (await self.enabled_in(room_id))[0]:
            return
        files = [f for f in result.files if f.kind == "participant" and f.path.exists()]
        if not files:  # nobody's audio: the summary already says so
            return
        job = _Job(self.ctx, self.speech, room_id, result, summary, files, self.search)
        job.after = self.after_transcript
        full = queue_full(self._queued, room_id, self.ctx.settings().transcripts)
        if full is not None:
            self.log.warning("no transcript in %s: %s", room_id, full)
            await job.refused(full)
            return
        task = asyncio.ensure_future(job.run())
        self._running.add(task)
        self._queued[room_id] += 1
        try:
            await task
        except asyncio.CancelledError:
            # Cancelled by stop() below: the recording's other observers still run. Cancelled
            # from outside (the task running this): that cancel goes on.
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        finally:
            self._running.discard(task)
            self._queued[room_id] -= 1
            if self._queued[room_id] <= 0:
                del self._queued[room_id]

    async def stop(self) -> None:
        """Cancel running jobs; each says so in its progress message (bounded wait)."""
        self._closed = True
        tasks = list(self._running)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_WAIT_S)


@dataclass
class _Speaker:
    name: str
    files: list[RecordedFile]
    words: list[Word] = field(default_factory=list)
    error: str = ""


def speakers_of(files: list[RecordedFile]) -> list[_Speaker]:
    """Files grouped by person and device (a recording in parts has several per person);
    two people with the same display name are told apart by their device."""
    by_key: dict[tuple[str, str], _Speaker] = {}
    for f in files:
        key = (f.identity or f.display_name, f.device)
        if key not in by_key:
            by_key[key] = _Speaker(" ".join(f.display_name.split()) or "?", [])
        by_key[key].files.append(f)
    speakers = list(by_key.values())
    names = [s.name for s in speakers]
    for (_, device), s in zip(by_key, speakers, strict=True):
        if names.count(s.name) > 1 and device:
            s.name = f"{s.name} ({device})"
    return speakers


class _Job:
    def __init__(
        self,
        ctx: BotContext,
        speech: SpeechToText,
        room: RoomID,
        result: RecordingResult,
        summary: EventID,
        files: list[RecordedFile],
        search: TranscriptSearch | None = None,
    ) -> None:
        self.ctx = ctx
        self.speech = speech
        self.search = search
        self.after: AfterTranscript | None = None
        self.room = room
        self.result = result
        self.summary = summary
        self.speakers = speakers_of(files)
        self.log = ctx.logger("transcripts")
        self.total_s = max(0.1, sum(f.duration_ms for f in files) / 1000)
        self.done: dict[str, float] = {}  # file path → seconds transcribed (worker threads)
        self.progress_id: EventID | None = None
        self.last: EventID = summary  # the thread's newest event (reply fallback)
        self.started = time.monotonic()

    # -- messages ----------------------------------------------------------------------------
    async def _say(self, markdown: str, html_body: str | None = None) -> EventID:
        event = await self.ctx.notices.send(
            self.room, markdown, html_body, thread=in_thread(self.summary, self.last)
        )
        self.last = event
        return event

    async def _progress(self, markdown: str) -> None:
        if self.progress_id is None:
            self.progress_id = await self._say(markdown)
        else:
            await self.ctx.notices.edit(self.room, self.progress_id, markdown)

    def _percent(self) -> int:
        done = sum(self.done.values())
        return min(99, int(100 * done / self.total_s))

    def _working(self) -> str:
        n = len(self.speakers)
        return (
            f"📝 Transcribing {n} speaker{'s' if n != 1 else ''} "
            f"({fmt_s(self.total_s)} of audio)… {self._percent()} %"
        )

    async def _ticker(self) -> None:
        shown = ""
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            if not self.done:  # still waiting for a slot or the model
                continue
            text = self._working()
            if text != shown:
                await self._progress(text)
                shown = text

    # -- the job -----------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            busy = self.speech.slots().locked()
            await self._progress(
                "📝 Transcript queued: another transcription is running, this one follows."
                if busy
                else self._working()
            )
            await self._transcribe_all()
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self._progress("📝 Transcript cancelled: I was stopped."), 3
                )
            raise
        except ModelUnavailable as e:
            await self._final(f"📝 No transcript: {e}.")
        except Exception as e:
            self.log.exception("the transcript in %s failed", self.room)
            await self._final(f"📝 No transcript: something went wrong ({type(e).__name__}).")

    async def refused(self, why: str) -> None:
        """No transcript for this recording (the queue is full): said in its thread."""
        await self._final(f"📝 No transcript: {why}")

    async def _final(self, text: str) -> None:
        with contextlib.suppress(Exception):
            await self._progress(text)

    async def _transcribe_all(self) -> None:
        ticker = asyncio.ensure_future(self._ticker())
        try:
            await asyncio.gather(*(self._speaker(s) for s in self.speakers))
        finally:
            await cancel_and_wait(ticker)
        heard = [s for s in self.speakers if s.words]
        failed = [s for s in self.speakers if s.error]
        if failed and len(failed) == len(self.speakers):
            await self._final("📝 No transcript: " + _errors(failed))
            return
        notes = (" " + _errors(failed)) if failed else ""
        if not heard:
            await self._final(f"📝 Transcript: no speech was recognised in this recording.{notes}")
            return
        await self._post(heard, notes)

    async def _speaker(self, speaker: _Speaker) -> None:
        chunk_s = max(30.0, self.ctx.settings().transcripts.chunk_minutes * 60)
        for f in speaker.files:
            key = str(f.path)

            def progress(seconds: float, key: str = key) -> None:
                self.done[key] = seconds

            try:
                words = await self.speech.transcribe_file(
                    f.path, f.offset_s, progress, chunk_s, room=str(self.room)
                )
            except ModelUnavailable:
                raise
            except Exception as e:  # a file that cannot be read: the others still count
                self.log.warning("transcribing %s failed: %r", f.path, e)
                speaker.error = getattr(e, "kind", type(e).__name__)
                continue
            self.done[key] = f.duration_ms / 1000
            speaker.words.extend(words)

    async def _post(self, heard: list[_Speaker], notes: str) -> None:
        lines = merge_lines([(s.name, s.words) for s in heard])
        words = sum(len(s.words) for s in heard)
        counts = (
            f"{len(heard)} speaker{'s' if len(heard) != 1 else ''}, "
            f"{words} word{'s' if words != 1 else ''}"
        )
        msg = render_message(
            lines, f"📝 **Transcript** ({counts})", more_note=": the attached files have all"
        )
        message = await self._say(msg.markdown, msg.html)
        await self._index(heard, message)
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.result.started_at))
        title = f"Transcript of the recording of {when} ({fmt_s(self.result.duration_ms / 1000)})"
        stem = time.strftime("%Y-%m-%d_%H%M%S", time.localtime(self.result.started_at))
        await self._attach(f"{stem}-transcript.txt", "text/plain", render_text(lines, title))
        await self._attach(f"{stem}-transcript.vtt", "text/vtt", render_vtt(lines))
        took = fmt_s(time.monotonic() - self.started)
        await self._final(f"📝 Transcript ready: {counts} (took {took}).{notes}")
        if self.after is not None:  # the recap: a task of its own, the queue slot is freed
            self.ctx.tasks.spawn(self.after(self.room, self.summary, self.last), "recap")

    async def _index(self, heard: list[_Speaker], message: EventID) -> None:
        """Into the room's search: each speaker's lines, with the user where the identity
        names one (`user:device`), so that an opt-out can take them out again."""
        if self.search is None:
            return
        rows = [
            IndexedLine(s.name, user_of(s.files[0].identity), line)
            for s in heard
            for line in speaker_lines(s.name, s.words)
        ]
        try:
            started_ms = int(self.result.started_at * 1000)
            await self.search.index(self.room, self.summary, message, started_ms, rows)
        except Exception as e:  # the transcript is posted; only its search entry is missing
            self.log.warning("transcript of %s not indexed for search: %s", self.room, e)

    async def _attach(self, name: str, mime: str, text: str) -> None:
        data = text.encode("utf-8")
        where: dict[str, Any] = await upload_for_room(self.ctx.client, self.room, data, mime, name)
        content = MediaMessageEventContent(
            msgtype=MessageType.FILE,
            body=name,
            info=FileInfo(mimetype=mime, size=len(data)),
            **where,
        )
        content["filename"] = name
        content.relates_to = in_thread(self.summary, self.last)
        self.last = await self.ctx.client.send_message(self.room, content)


def user_of(identity: str | None) -> str:
    """`@user:server:DEVICE` → `@user:server`; a hashed (MSC4195) identity names nobody."""
    if not identity or not identity.startswith("@") or identity.count(":") < 2:
        return ""
    return identity.rsplit(":", 1)[0]


def queue_full(queued: Counter[str], room: str, settings: TranscriptSettings) -> str | None:
    """Why a recording gets no transcript because too many wait already, or None."""
    if queued[room] >= settings.max_queued_per_room:
        n = settings.max_queued_per_room
        waiting = f"{n} recordings wait for their" if n != 1 else "1 recording waits for its"
        return (
            f"{waiting} transcript in this room already, the most a room may queue "
            "(transcripts.max_queued_per_room). The files are above."
        )
    if sum(queued.values()) >= settings.max_queued:
        return (
            f"{settings.max_queued} recordings are already waiting for their transcripts, "
            "the most I queue (transcripts.max_queued). The files are above."
        )
    return None


def _errors(failed: list[_Speaker]) -> str:
    who = ", ".join(md_escape(s.name, NAME_LIMIT) for s in failed)
    why = ", ".join(sorted({s.error for s in failed}))
    return f"the audio of {who} could not be read ({why})."
