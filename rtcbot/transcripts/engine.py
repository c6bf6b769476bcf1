"""Speech to text with faster-whisper, in a process of its own (`speech_worker.py`).

One `SpeechToText` per plugin instance: one worker process holds the model (loaded once,
when first needed) for the post-recording transcripts and the live captions; `max_jobs`
bounds how many transcriptions run at once, shared fairly between rooms. After
`transcripts.model_idle_s` unused the process exits, and the model's memory with it: maubot
never holds the model (bench.soak: it grew by megabytes per recording when it did).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..media.heap import resident_bytes
from .fair_slots import FairSlots
from .speech_process import SpeechProcess, WorkerFailed, WorkerGone, WorkerLoadError
from .speech_worker import FILE_BEAM, RATE, read_chunks, resolve_model

__all__ = [
    "FILE_BEAM",
    "RATE",
    "ModelSettings",
    "ModelUnavailable",
    "SpeechToText",
    "Word",
    "read_chunks",
]
__all__ += ["resolve_model"]

DEFAULT_CHUNK_S = 300.0

Progress = Callable[[float], None]  # seconds of the file done


class ModelUnavailable(Exception):
    """The configured model cannot be loaded (a sentence for the room, no secret in it)."""


class TranscriptionFailed(Exception):
    """One file or piece could not be transcribed; `kind` names why (the worker's exception
    type, e.g. "InvalidDataError"), said in the room."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass(frozen=True)
class Word:
    start: float  # seconds on the recording's time axis
    end: float
    text: str
    probability: float = 1.0


@dataclass(frozen=True)
class ModelSettings:
    model: str = "base"  # a name faster-whisper downloads, or a local CTranslate2 directory
    language: str = ""  # "" = detect
    compute_type: str = "int8"
    cpu_threads: int = 1
    max_jobs: int = 2
    download_root: str = ""  # where named models are kept ("" = the library's cache)
    local_files_only: bool = False  # offline servers: never download
    idle_s: float = 300.0  # the worker exits after this long unused (0: kept)
    file_beam: int = FILE_BEAM  # beam search for files (captions are greedy)


class SpeechToText:
    def __init__(self, settings: Callable[[], ModelSettings], log: logging.Logger) -> None:
        self.settings = settings
        self.log = log
        self._worker: SpeechProcess | None = None
        self._worker_key: ModelSettings | None = None
        self._starting = asyncio.Lock()
        self._slots = FairSlots(settings().max_jobs)  # shared fairly between rooms
        self._busy = 0
        self._release: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False  # after the plugin's stop no worker is started again

    @contextlib.contextmanager
    def _in_use(self) -> Iterator[None]:
        self._busy += 1
        if self._release is not None:
            self._release.cancel()
            self._release = None
        try:
            yield
        finally:
            self._busy -= 1
            idle_s = self.settings().idle_s
            if self._busy == 0 and idle_s > 0:
                self._release = asyncio.get_running_loop().call_later(idle_s, self.release)

    @property
    def loaded(self) -> bool:
        return self._worker is not None and self._worker.alive

    @property
    def worker_pid(self) -> int | None:
        """The worker process (for the benches' memory and CPU figures), if one runs."""
        return self._worker.pid if self.loaded and self._worker is not None else None

    def live_metrics(self) -> dict[str, float]:
        pid = self.worker_pid
        return {"rtcbot_speech_worker_resident_bytes": resident_bytes(pid) if pid else 0.0}

    def release(self) -> None:
        """End the worker when nothing uses it: the model's memory goes with the process."""
        self._release = None
        if self._busy or self._worker is None:
            return
        worker, self._worker = self._worker, None
        self._end(worker)
        self.log.info("speech model released (unused for %.0f s)", self.settings().idle_s)

    async def close(self) -> None:
        """The plugin stops: no worker outlives it, and none is started after."""
        self._closed = True
        if self._release is not None:
            self._release.cancel()
            self._release = None
        worker, self._worker = self._worker, None
        if worker is not None:
            self._end(worker)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _end(self, worker: SpeechProcess) -> None:
        task = asyncio.ensure_future(worker.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # -- the worker ------------------------------------------------------------------------
    async def _ready(self) -> SpeechProcess:
        s = self.settings()
        async with self._starting:
            if self._closed:
                raise ModelUnavailable("I am stopping")
            worker = self._worker
            if worker is not None and worker.alive:
                if self._worker_key == s or worker.busy:
                    return worker  # new settings take effect once it is idle
            if worker is not None:
                self._worker = None
                self._end(worker)
            try:
                worker = await SpeechProcess.start(asdict(s), self.log)
            except WorkerLoadError as e:
                self.log.warning("loading the speech model %r failed: %s", s.model, e)
                raise ModelUnavailable(_not_loaded(s, e.kind)) from e
            except (WorkerGone, OSError) as e:
                self.log.warning("the speech worker did not start: %s", e)
                # The detail (paths, an OS error) is the operator's, in the log above.
                raise ModelUnavailable("the speech worker did not start") from e
            self._worker, self._worker_key = worker, s
            self.log.info("speech model %s loaded (%s)", s.model, s.compute_type)
            return worker

    async def _run(
        self, header: dict[str, Any], payload: bytes, on_words: Callable[..., None]
    ) -> None:
        worker = await self._ready()
        try:
            await worker.request(header, on_words, payload)
        except WorkerGone as e:
            raise ModelUnavailable(str(e)) from e
        except WorkerFailed as e:
            self.log.warning("transcription failed in the worker: %s", e)
            raise TranscriptionFailed(e.kind) from e

    def slots(self) -> FairSlots:
        n = self.settings().max_jobs
        if self._slots.n != n:
            self._slots.resize(n)
        return self._slots

    # -- transcribing ----------------------------------------------------------------------
    async def transcribe_file(
        self,
        path: Path,
        offset_s: float = 0.0,
        progress: Progress | None = None,
        chunk_s: float = DEFAULT_CHUNK_S,
        room: str = "",
    ) -> list[Word]:
        """Every word of one speaker's file, on the recording's axis (`offset_s` = where the
        file starts). Waits for a job slot (`room`'s turn); the work runs in the worker."""
        words: list[Word] = []

        def on_words(got: list[list[Any]], done_s: float) -> None:
            words.extend(Word(float(a), float(b), str(t), float(p)) for a, b, t, p in got)
            if progress is not None:
                progress(done_s)

        header = {"op": "file", "path": str(path), "offset_s": offset_s, "chunk_s": chunk_s}
        async with self.slots().turn(room):
            with self._in_use():
                await self._run(header, b"", on_words)
        return words

    async def transcribe_pcm(
        self, samples: np.ndarray, offset_s: float = 0.0, room: str = ""
    ) -> list[Word]:
        """A short piece of 16 kHz float32 mono audio (a caption)."""
        words: list[Word] = []

        def on_words(got: list[list[Any]], _done_s: float) -> None:
            words.extend(Word(float(a), float(b), str(t), float(p)) for a, b, t, p in got)

        payload = np.ascontiguousarray(samples, dtype=np.float32).tobytes()
        async with self.slots().turn(room):
            with self._in_use():
                await self._run({"op": "pcm", "offset_s": offset_s}, payload, on_words)
        return words


def _not_loaded(s: ModelSettings, kind: str) -> str:
    """Why the model did not load, as a sentence for the room (no traceback)."""
    why = kind
    if s.model.startswith(("/", "./", "../", "~")) and not Path(s.model).expanduser().exists():
        why = "no such directory"
    elif s.local_files_only and not s.model.startswith("package:"):
        why += ", and transcripts.local_files_only forbids downloading it"
    return f"the speech model `{s.model}` could not be loaded ({why}); check transcripts.model"
