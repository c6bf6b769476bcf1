"""What a retention of 0 deletes after a recording was posted (rtcbot/recording/posts.py):
only the files really uploaded, whatever the settings say when the deletion runs (review
finding 6). A unit test: the stack adds nothing to a decision made from a settings change
between the post and the deletion. The room is a stand-in that records what was posted."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from mautrix.types import EventID, RoomID

from rtcbot.media.recording_result import RecordedFile, RecordingResult
from rtcbot.recording import posts as recording_posts

ROOM = RoomID("!room:localhost")


class Notices:
    def __init__(self) -> None:
        self.said: list[str] = []

    async def send(self, room: RoomID, text: str) -> EventID:
        self.said.append(text)
        return EventID("$summary")


def ctx_with(recording: SimpleNamespace) -> Any:
    return SimpleNamespace(
        settings=lambda: SimpleNamespace(recording=recording), notices=Notices()
    )


def result_of(tmp_path: Path, sizes: list[int]) -> RecordingResult:
    files = []
    for i, size in enumerate(sizes):
        path = tmp_path / f"part{i}.ogg"
        path.write_bytes(b"x" * size)
        files.append(RecordedFile(path, "participant", f"id{i}", f"n{i}", "D", 0, 1000, size))
    return RecordingResult(files, 1000, 1, [], 0, "stopped", 1_800_000_000)


async def test_retention_0_deletes_only_what_was_uploaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uploaded: list[Path] = []

    async def upload(ctx: Any, room: RoomID, path: Path, *_: Any) -> None:
        uploaded.append(path)

    monkeypatch.setattr(recording_posts, "upload_recording", upload)
    settings = SimpleNamespace(retention_days=0, max_upload_mb=1)

    # Too large to post: kept on disk and the room is told so.
    (tmp_path / "big").mkdir()
    big = result_of(tmp_path / "big", [2 * 1024**2])
    ctx = ctx_with(settings)
    await recording_posts.post_recording(ctx, ROOM, big)
    assert "larger than the upload limit" in ctx.notices.said[-1]
    settings.max_upload_mb = 10  # the operator raises the limit before the deletion runs
    recording_posts.drop_posted_files(ctx, big)
    assert big.files[0].path.exists(), "a file never posted was deleted"
    assert uploaded == []

    # Posted: deleted afterwards, even if the limit is lowered meanwhile.
    (tmp_path / "small").mkdir()
    small = result_of(tmp_path / "small", [100, 200])
    await recording_posts.post_recording(ctx, ROOM, small)
    assert sorted(uploaded) == sorted(f.path for f in small.files)
    settings.max_upload_mb = 0
    recording_posts.drop_posted_files(ctx, small)
    assert not any(f.path.exists() for f in small.files)
