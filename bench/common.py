"""Helpers shared by the benchmarks."""

from __future__ import annotations

import os
from pathlib import Path

from rtcbot.media.heap import resident_bytes


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def rss_mb(pid: int) -> float:
    """A process's resident memory in MiB (0 when it is gone), as the bot's gauge reads it."""
    return resident_bytes(pid) / 2**20


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid` (e.g. maubot's speech worker)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def children_rss_mb(pid: int) -> float:
    """RSS of `pid`'s child processes together (0 when it has none)."""
    total = 0.0
    for kid in children_of(pid):
        total += rss_mb(kid)
    return total


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, as `uptime` prints them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of another process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
