"""Handing freed memory back to the system (glibc).

glibc keeps what a thread frees in that thread's malloc arena, and large buffers freed on the
heap stay mapped: after a recording (its files read for upload in a worker thread, the
encoder's buffers in the writer thread) maubot's RSS stayed a few MB higher each time
(bench.soak). `malloc_trim(0)` returns the free pages of every arena; it takes milliseconds.
"""

from __future__ import annotations

import contextlib
import ctypes


def trim_heap() -> None:
    with contextlib.suppress(Exception):  # not glibc (musl, macOS): nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)
