"""Handing a finished recording's memory back to the system.

A recorder and its readers, tasks and callbacks refer to each other: only the cycle
collector frees them, and its oldest generation runs seldom, so a finished recording's
buffers stayed for many recordings more (maubot held 140 threads of finished files' encoders
until a collection, bench.soak). Collected once the recording is posted and transcribed.

glibc keeps what a thread frees in that thread's malloc arena, and large buffers freed on the
heap stay mapped: after a recording (its files read for upload in a worker thread, the
encoder's buffers in the writer thread) maubot's RSS stayed a few MB higher each time
(bench.soak). `malloc_trim(0)` returns the free pages of every arena; it takes milliseconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc


def trim_heap() -> None:
    with contextlib.suppress(Exception):  # not glibc (musl, macOS): nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def release_memory() -> None:
    """Collect unreachable cycles (tens of ms), then trim the heap."""
    gc.collect()
    trim_heap()
