"""Where recordings live on disk, and how much of it they may take.

- A room's folder: its id made safe for a file name, plus a short hash of the exact id, so
  two rooms whose ids differ only in punctuation (`!x:matrix.example.org` and
  `!x:matrix-example.org`) never share a folder.
- A free-disk floor (`recording.min_free_mb`): no recording starts below it, and a running one
  stops when the disk gets there (the recorder asks every flush, ~2 s).
- What a room is told about files that stay on disk: the room's folder and the recording's
  name, never the bot's absolute path (it says how the server is laid out).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

MB = 1024 * 1024


def room_folder(room_id: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9]+", "_", room_id).strip("_")[:80] or "room"
    digest = hashlib.sha256(room_id.encode("utf-8")).hexdigest()[:10]
    return f"{readable}-{digest}"


def free_mb(directory: Path) -> float:
    """Free space (MB) of the filesystem that holds `directory` (or would: the nearest
    existing parent)."""
    probe = directory.absolute()
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return shutil.disk_usage(probe).free / MB


def below_floor(directory: Path, floor_mb: int) -> bool:
    """True when the disk has less than `floor_mb` free (0: no floor). A disk that cannot be
    asked counts as full: recording blind onto it is what the floor is there to prevent."""
    if floor_mb <= 0:
        return False
    try:
        return free_mb(directory) < floor_mb
    except OSError:
        return True


def kept_where(path: Path) -> str:
    """Where a recording's file is kept, as a room is told: its folder within the recordings
    directory (`<room folder>/`)."""
    return f"{path.parent.name}/"
