"""Benches that run in seconds are run here in their quick mode: a bench that breaks fails the
suite (the timings they print are not asserted; they belong in docs/BENCHMARKS.md)."""

from __future__ import annotations

import re
import subprocess
import sys

from rtcbot_stack.paths import ROOT


def test_search_latency_quick() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.search_latency", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"search over 5 calls \(100 lines.*p50 [\d.]+ ms", done.stdout), done.stdout


def test_speech_memory_quick() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.speech_memory", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"RSS \d+ MB before, \d+ MB after a transcription", done.stdout), done.stdout
