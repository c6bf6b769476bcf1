"""The process-wide allocator settings rtcbot makes (glibc), in a process of their own."""

from __future__ import annotations

import os
import subprocess
import sys

from rtcbot.media.heap import live_metrics, resident_bytes
from rtcbot_stack.paths import ROOT

PROBE = "from rtcbot.media.heap import limit_arenas; print(limit_arenas())"


def probe(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_arenas_are_limited_unless_the_operator_chose() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    assert probe(env) == "True"  # glibc accepted the limit
    assert probe({**env, "MALLOC_ARENA_MAX": "4"}) == "False"  # the operator's setting stays


def test_resident_bytes_of_a_live_process_and_of_one_that_is_gone() -> None:
    assert 10e6 < live_metrics()["rtcbot_process_resident_bytes"] < 5e9  # this very process
    script = "import time; print('up', flush=True); time.sleep(30)"
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE) as child:
        assert child.stdout is not None and child.stdout.readline() == b"up\n"  # started
        assert resident_bytes(child.pid) > 1e6
        child.kill()
    assert resident_bytes(child.pid) == 0.0  # reaped: nothing to read, no error
