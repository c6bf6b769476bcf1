"""Every bench that needs the stack, in its quick mode: a bench that breaks fails the suite.

Each starts its own stack (in this test run's network namespace, as `make test` gives it), as
`docs/BENCHMARKS.md` runs it. The timings they print are not asserted (they belong in the
docs); what is asserted is that each ran to its end and measured what it says it measures.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from rtcbot_stack.paths import ROOT
from tests.stack.isolation import require_isolation

pytestmark = pytest.mark.stack

NUMBER = r"[\d.]+"
# recorder_scale's columns after speakers and files: CPU, per track, dropped, recorded/wall,
# silent files (0: every file holds audio), the bare SDK's CPU, the ratio to it, the
# publisher farm's and the SFU's CPU.
ROW = r"+\d+% +[\d.]+% +\d+ +[\d.]+ +0 +\d+% +[\d.]+ +\d+% +\d+%"


@pytest.mark.parametrize(
    ("args", "prints"),
    [
        (["join_latency"], rf"command → bot in LiveKit room: +p50 {NUMBER} s"),
        (["reaction_latency"], rf"ratio +p50 {NUMBER}×"),
        # 4 files in each mode, none silent (an undecrypted track would be).
        (["recorder_scale"], rf"plain +4 +4 {ROW}\n *encrypted +4 +4 {ROW}\n"),
        (["scale_rooms"], r"churn: \d+ membership events .* over 10 rooms"),
        # The bot back in the call after each restart (the 10 s goal is the bench's, not ours).
        (["crash_loop"], r'"cycles_done": 2,[\s\S]*"not_back_in_call": 0,'),
        (["transcription", "speed"], rf"run 2: {NUMBER} s of speech .*× real time"),
        (["transcription", "room"], r"final state: 📝 Transcript ready: 2 speakers"),
        (["recorder_soak"], r"3 recordings: RSS [\d.]+ → [\d.]+ MB"),
        # The SDK alone, in each of its four rooms, and which native library it measured.
        (
            ["sdk_soak"],
            r"native library \d+\.\d+\.\d+\n[\s\S]*empty room: 3 connections: RSS .* "
            r"malloc in use [\d.]+ → [\d.]+ MB[\s\S]*2 speakers, not subscribed: 3 connections"
            r"[\s\S]*2 speakers who leave first: 3 connections",
        ),
        (["soak"], r"3 recordings in \d+ s\. .* After 6 s idle \(model released\)"),
        # The same with the peers leaving the SFU room before each stop (a call's end).
        (
            ["soak", "--peers-leave-first"],
            r"the peers leave first;[\s\S]*3 recordings in \d+ s\. .* After 6 s idle",
        ),
    ],
    ids=lambda v: "-".join(v) if isinstance(v, list) else None,
)
def test_bench_quick_mode(args: list[str], prints: str) -> None:
    require_isolation()
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{args[0]}", *args[1:], "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    # crash_loop exits 1 when a membership outlived its 10 s goal: a measurement, not a break.
    assert done.returncode in ((0, 1) if args[0] == "crash_loop" else (0,)), done.stderr[-3000:]
    assert re.search(prints, done.stdout), done.stdout[-3000:] + done.stderr[-2000:]
