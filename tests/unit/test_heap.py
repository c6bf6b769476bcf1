"""The process-wide allocator settings rtcbot makes (glibc), in a process of their own."""

from __future__ import annotations

import os
import subprocess
import sys

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
