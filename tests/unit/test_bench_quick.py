"""Benches that run in seconds are run here in their quick mode: a bench that breaks fails the
suite (the timings they print are not asserted; they belong in docs/BENCHMARKS.md)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from rtcbot_stack.paths import ROOT


@pytest.mark.parametrize(
    ("bench", "prints"),
    [
        ("search_latency", r"search over 5 calls \(100 lines.*p50 [\d.]+ ms"),
        ("speech_memory", r"RSS \d+ MB before, \d+ MB after a transcription"),
        ("human_speech", r"word error 0\.0% over 22 words \(heard: 'And so my fellow Americans"),
        ("opus_encode", r"the recorder's \(complexity 1, 60 ms, 48 kHz\): [\d.]+% of a core"),
    ],
)
def test_quick_mode(bench: str, prints: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{bench}", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(prints, done.stdout), done.stdout
