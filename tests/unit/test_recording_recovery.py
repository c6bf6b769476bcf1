"""Which files of a recording a crash left, and how they are labelled (recording/recovery.py)."""

from __future__ import annotations

from pathlib import Path

from rtcbot.recording.recovery import left_files

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
