"""Which files of a recording a crash left, and how they are labelled (recording/recovery.py)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rtcbot.recording.recovery import RecordingRecovery, left_files
from rtcbot.recording.store import RecordingInProgress

PREFIX = "2026-11-27_163125"


def test_files_of_the_recording_are_found_mix_first_and_labelled(tmp_path: Path) -> None:
    for name, data in (
        (f"{PREFIX}-Alice_Example-ALICEDEV.ogg", b"x"),
        (f"{PREFIX}-Bob-BOBDEV-part2.ogg", b"x"),
        (f"{PREFIX}-mixed.ogg", b"x"),
        (f"{PREFIX}-Empty-DEV.ogg", b""),  # nothing written: not posted
        ("2026-11-27_170000-Other-DEV.ogg", b"x"),  # another recording
    ):
        (tmp_path / name).write_bytes(data)
    found = left_files(tmp_path, PREFIX)
    assert [f.label for f in found] == [
        "Mix of everyone",
        "Alice Example (ALICEDEV)",
        "Bob (BOBDEV, part 2)",
    ]
    assert all(f.size == 1 for f in found)


def test_a_missing_directory_has_no_files(tmp_path: Path) -> None:
    assert left_files(tmp_path / "gone", PREFIX) == []


# An upload that fails half-way cannot be made to happen on cue against the real homeserver:
# the upload is replaced here (and only it). The real path, a kill -9 during a recording and
# `record delete last` after the restart, is tests/browser/test_call_lifecycle_in_element_call.py.
async def test_what_was_posted_before_an_upload_failed_is_still_deletable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (f"{PREFIX}-mixed.ogg", f"{PREFIX}-Alice-ALICEDEV.ogg"):
        (tmp_path / name).write_bytes(b"x")
    sent: list[str] = []

    async def notice(room: str, text: str) -> str:
        sent.append(text)
        return "$notice"

    async def upload(_ctx: Any, _room: str, path: Path, _label: str) -> str:
        if "Alice" in path.name:
            raise RuntimeError("the homeserver refused the upload")
        return "$mix"

    ctx = SimpleNamespace(
        logger=lambda _name: logging.getLogger("test"),
        settings=lambda: SimpleNamespace(
            recording=SimpleNamespace(max_upload_mb=100, retention_days=30)
        ),
        notices=SimpleNamespace(send=notice),
    )
    monkeypatch.setattr("rtcbot.recording.recovery.upload_recording", upload)
    recovery = RecordingRecovery(ctx, store=SimpleNamespace())  # type: ignore[arg-type]
    remembered: list[tuple[str, str, list[str], list[Path]]] = []

    async def on_posted(room: str, first: str, events: list[str], files: list[Path]) -> None:
        remembered.append((room, first, events, files))

    recovery.on_posted = on_posted
    rec = RecordingInProgress("!r:hs", PREFIX, str(tmp_path), 1_764_000_000_000)
    with pytest.raises(RuntimeError):
        await recovery._post(rec)
    assert sent and sent[0].endswith("What was recorded until then:")
    # The notice and the mix were posted: `delete last` finds them, with both files on disk.
    assert remembered == [
        (
            "!r:hs",
            "$notice",
            ["$mix"],
            [tmp_path / f"{PREFIX}-mixed.ogg", tmp_path / f"{PREFIX}-Alice-ALICEDEV.ogg"],
        )
    ]
