"""Handing a finished recording's memory back to the system.

A recorder and its readers, tasks and callbacks refer to each other: only the cycle
collector frees them, and its oldest generation runs seldom, so a finished recording's
buffers stayed for many recordings more (maubot held 140 threads of finished files' encoders
until a collection, bench.soak). Collected once the recording is posted and transcribed.

glibc also gives each thread that allocates its own arena (up to 8 per CPU), and every arena
keeps its own free memory and fragments: the LiveKit runtime's threads, the writer threads of
recordings and the default executor's made maubot's RSS climb by 26 MB over its first ten
recordings (bench.soak). Two arenas do the same work (the threads mostly wait) and
the climb was a third of it (MALLOC_ARENA_MAX=2, the same soak).

glibc keeps what a thread frees in that thread's malloc arena, and large buffers freed on the
heap stay mapped: after a recording (its files read for upload in a worker thread, the
encoder's buffers in the writer thread) maubot's RSS stayed a few MB higher each time
(bench.soak). `malloc_trim(0)` returns the free pages of every arena; it takes milliseconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
from pathlib import Path

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter


def limit_arenas(n: int = ARENAS) -> bool:
    """At most `n` malloc arenas from now on (threads started later share them); False where
    this is not glibc. The operator's MALLOC_ARENA_MAX, if set, is left alone."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, n))
    except Exception:
        return False


def trim_heap() -> None:
    with contextlib.suppress(Exception):  # not glibc (musl, macOS): nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def release_memory() -> None:
    """Collect unreachable cycles (tens of ms), then trim the heap."""
    gc.collect()
    trim_heap()


def resident_bytes(pid: int | str = "self") -> float:
    """A process's resident memory now; 0 when it is gone (or this is not Linux)."""
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return float(pages * os.sysconf("SC_PAGE_SIZE"))


def live_metrics() -> dict[str, float]:
    """maubot's own resident memory: what the memory alert watches (docs/MONITORING.md)."""
    return {"rtcbot_process_resident_bytes": resident_bytes()}
