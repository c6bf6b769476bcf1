"""What a recording may take: recordings at once, speakers per recording, free disk.

`recording.max_concurrent` recordings run at once in all rooms together (one more is
refused with the reason); `recording.max_tracks` speakers are recorded per recording (the
recorder names the others in the summary); below `recording.min_free_mb` of free disk no
recording starts, and a running one stops with its files kept and posted (`DiskFloor`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from ..media.recorder import Recorder
from ..recording.settings import RecordingSettings
from .disk import below_floor

CHECK_EVERY_S = 2.0  # as often as the recorder flushes its files


class DiskFloor:
    """Stops a running recording when the disk gets below `recording.min_free_mb` (the
    settings are read at each check: a change applies at once). Its stop reason `disk_full`
    makes it end as any other automatic stop: files kept, summary and files posted."""

    def __init__(
        self,
        directory: Path,
        settings: Callable[[], RecordingSettings],
        log: logging.Logger,
        every_s: float = CHECK_EVERY_S,
    ) -> None:
        self.directory = directory
        self.settings = settings
        self.log = log
        self.every_s = every_s

    async def watch(self, recorder: Recorder) -> None:
        while recorder.state in ("recording", "interrupted"):
            await asyncio.sleep(self.every_s)
            if recorder.state == "recording" and below_floor(
                self.directory, self.settings().min_free_mb
            ):
                self.log.warning("%s: below the free-disk floor, stopping", self.directory.name)
                await recorder.stop("disk_full")
                return


def recording_refusal(running: int, settings: RecordingSettings) -> str | None:
    """Why a new recording may not start, as a sentence for the room, or None."""
    if running >= settings.max_concurrent:
        n = settings.max_concurrent
        return (
            f"I am already recording {n} call{'s' if n != 1 else ''}, the most I record at once "
            "(recording.max_concurrent). Try again when one has ended."
        )
    if below_floor(Path(settings.directory), settings.min_free_mb):
        return (
            "There is too little free disk space to record (recording.min_free_mb): "
            "my operator needs to make room first."
        )
    return None
