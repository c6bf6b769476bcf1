"""The config sections of recordings and the announcer."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import flag, setting, text, whole


@dataclass(frozen=True)
class RecordingSettings:
    max_minutes: int = setting(120, whole(1, 24 * 60), "a recording stops after this long")
    directory: str = setting(
        "rtcbot-recordings", text(empty_is_default=True), "where recordings are written"
    )
    max_upload_mb: int = setting(50, whole(0, 10_000), "larger files stay on disk, not posted")
    retention_days: int = setting(7, whole(0, 3650), "files are deleted after this many days")
    spoken_consent: bool = setting(True, flag(), "say in the call when recording starts/stops")
    # Limits: recordings at once (instance-wide), speakers per recording, free disk (MB).
    max_concurrent: int = setting(4, whole(1, 1000), "recordings at once, instance-wide")
    max_tracks: int = setting(25, whole(1, 1000), "speakers per recording")
    min_free_mb: int = setting(500, whole(0, 10**12), "free disk below which recording stops")


@dataclass(frozen=True)
class AnnouncerSettings:
    join_chime: bool = setting(True, flag(), "a chime when the announcer joins")
