"""Where live captions cut a speaker's audio into utterances (pure)."""

from __future__ import annotations

import numpy as np

from rtcbot.transcripts.captions import MAX_UTTERANCE_S, PAUSE_S, _Speaker, utterance_end
from rtcbot.transcripts.engine import RATE


def test_no_speech_waits() -> None:
    assert utterance_end([], 5 * RATE, final=False) is None


def test_speech_followed_by_a_pause_is_cut_after_it() -> None:
    end = 2 * RATE
    length = end + int(PAUSE_S * RATE) + 1
    assert utterance_end([(RATE // 2, end)], length, final=False) == (RATE // 2, end + RATE // 10)


def test_speech_still_going_waits_unless_final_or_long() -> None:
    length = 3 * RATE
    assert utterance_end([(0, length - 10)], length, final=False) is None
    assert utterance_end([(0, length - 10)], length, final=True) == (0, length)
    long = int(MAX_UTTERANCE_S * RATE) + RATE
    assert utterance_end([(0, long)], long, final=False) == (0, int(MAX_UTTERANCE_S * RATE))


def test_a_second_span_means_the_first_is_over() -> None:
    length = 4 * RATE
    spans = [(0, RATE), (int(1.3 * RATE), length)]
    assert utterance_end(spans, length, final=False) == (0, RATE + RATE // 10)


def test_buffer_take_keeps_time_and_order() -> None:
    sp = _Speaker("A", start=100.0)
    sp.audio = [np.arange(10, dtype=np.float32), np.arange(10, 20, dtype=np.float32)]
    sp.samples = 20
    assert list(sp.take(0)) == list(range(20)) and sp.samples == 20
    assert list(sp.take(5)) == list(range(5))
    assert sp.samples == 15 and sp.start == 100.0 + 5 / RATE
    assert list(sp.take(0)) == list(range(5, 20))
