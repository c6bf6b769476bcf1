"""Recordings on disk (review L7, M2): room folders that cannot collide, owner-only files, the
free-disk floor, the concurrency limit and what a room is told about kept files."""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
from pathlib import Path

import numpy as np

from rtcbot.media.audio_files import OggOpusFile
from rtcbot.media.track_limit import TrackLimit
from rtcbot.recording.disk import below_floor, free_mb, kept_where, room_folder
from rtcbot.recording.limits import recording_refusal
from rtcbot.recording.settings import RecordingSettings


def test_room_folders_of_look_alike_ids_differ() -> None:
    a, b = room_folder("!x:matrix.example.org"), room_folder("!x:matrix-example.org")
    assert a != b  # before: both were "x_matrix_example_org"
    assert a.startswith("x_matrix_example_org-") and "/" not in a and ".." not in a
    assert room_folder("!x:matrix.example.org") == a  # stable across restarts


def test_recordings_are_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "recordings" / room_folder("!r:example.org") / "2026-a-mixed.ogg"
        f = OggOpusFile(path)
        f.write(np.zeros(4800, dtype=np.int16))
        f.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_the_floor_and_the_concurrency_limit(tmp_path: Path) -> None:
    free = free_mb(tmp_path / "not" / "made" / "yet")  # the nearest existing parent's disk
    assert free > 0
    assert not below_floor(tmp_path, 0)  # 0: no floor
    assert below_floor(tmp_path, int(free) + 1_000_000)
    settings = dataclasses.replace(
        RecordingSettings(), directory=str(tmp_path), max_concurrent=2, min_free_mb=0
    )
    assert recording_refusal(1, settings) is None
    assert "the most I record at once" in str(recording_refusal(2, settings))
    low = dataclasses.replace(settings, min_free_mb=int(free) + 1_000_000)
    assert "too little free disk space" in str(recording_refusal(0, low))


def test_a_room_is_told_the_room_folder_not_the_absolute_path(tmp_path: Path) -> None:
    path = tmp_path / "srv" / "rtcbot-recordings" / "room-abc" / "2026-mixed.ogg"
    assert kept_where(path) == "room-abc/"
    assert str(tmp_path) not in kept_where(path)


def test_speakers_beyond_the_limit_are_named_not_recorded() -> None:
    limit = TrackLimit(2, logging.getLogger("test.limit"))
    recorded: list[str] = []
    for key, name in (("@a:x:A", "Ann"), ("@b:x:B", "Ben"), ("@c:x:C", "Cy"), ("@d:x:D", "Di")):
        if not limit.refuses(key, recorded, lambda name=name: name):
            recorded.append(key)
    assert recorded == ["@a:x:A", "@b:x:B"]
    assert not limit.refuses("@a:x:A", recorded, lambda: "Ann")  # a known speaker's new track
    assert limit.names() == ["Cy", "Di"]
    assert not TrackLimit(None, logging.getLogger("t")).refuses("k", recorded, lambda: "")
