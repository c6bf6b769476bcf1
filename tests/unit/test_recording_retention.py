"""Retention with real files in a temporary recordings folder (recording/retention.py, review
M6): what is busy is never deleted, `retention_days: 0` deletes nothing by age, and the first
pass waits for the crash recovery."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from pathlib import Path

from rtcbot.recording.retention import Recording, Retention
from rtcbot.recording.settings import RecordingSettings
from rtcbot.settings import Settings
from tests.stack.eventually import eventually

OLD = time.time() - 30 * 86400  # a month ago: past any retention of 7 days


def recording(root: Path, folder: str, prefix: str, age: float = OLD) -> list[Path]:
    (root / folder).mkdir(parents=True, exist_ok=True)
    files = [root / folder / f"{prefix}-{name}.ogg" for name in ("mixed", "Alice-ALICEDEV")]
    for f in files:
        f.write_bytes(b"OggS")
        os.utime(f, (age, age))
    return files


def retention(
    root: Path,
    days: int,
    running: list[Recording] | None = None,
    listed: list[Recording] | None = None,
) -> Retention:
    settings = dataclasses.replace(RecordingSettings(), directory=str(root), retention_days=days)

    async def listed_now() -> list[Recording]:
        return listed or []

    return Retention(
        lambda: settings, lambda: running or [], listed_now, logging.getLogger("test.retention")
    )


async def test_busy_recordings_survive_the_pass_old_ones_go(tmp_path: Path) -> None:
    old = recording(tmp_path, "room_a", "2026-11-01_100000")
    fresh = recording(tmp_path, "room_a", "2026-12-01_100000", age=time.time())
    running = recording(tmp_path, "room_b", "2026-11-02_100000")
    listed = recording(tmp_path, "room_c", "2026-11-03_100000")  # cut off by a crash
    uploading = recording(tmp_path, "room_d", "2026-11-04_100000")
    r = retention(
        tmp_path,
        7,
        running=[(tmp_path / "room_b", "2026-11-02_100000")],
        listed=[(tmp_path / "room_c", "2026-11-03_100000")],
    )
    r.hold(uploading)
    deleted = await r.apply_once()
    assert sorted(deleted) == sorted(old)
    assert all(f.exists() for f in fresh + running + listed + uploading)
    # Released (transcribed and posted): the next pass may delete it.
    r.release(uploading)
    assert sorted(await r.apply_once()) == sorted(uploading)


async def test_zero_days_deletes_nothing_by_age(tmp_path: Path) -> None:
    """Before the fix, 0 days deleted every file that no *running* recorder held: a crash's
    recording before the recovery posted it, and files still uploading or transcribing."""
    cut_off = recording(tmp_path, "room", "2026-11-01_100000")
    never_posted = recording(tmp_path, "room", "2026-11-02_100000")
    r = retention(tmp_path, 0, listed=[(tmp_path / "room", "2026-11-01_100000")])
    assert await r.apply_once() == []
    assert all(f.exists() for f in cut_off + never_posted)


async def test_the_first_pass_waits_for_the_recovery(tmp_path: Path) -> None:
    files = recording(tmp_path, "room", "2026-11-01_100000")
    recovered = asyncio.Event()
    r = retention(tmp_path, 7)
    r.start(recovered.wait())
    try:
        for _ in range(20):  # the loop gets many turns: nothing happens while recovery runs
            await asyncio.sleep(0)
        assert all(f.exists() for f in files)
        recovered.set()
        await eventually(
            lambda: not any(f.exists() for f in files),
            timeout=10,
            what="the pass after the recovery",
            interval=0.01,
        )
    finally:
        await r.stop()


async def test_the_recovery_keeps_a_crash_recording_listed_then_drops_it_once_posted(
    tmp_path: Path,
) -> None:
    """With 0 days, a recording cut off by a crash is never deleted before the recovery
    posts it; once posted, the recovery deletes it (nothing posted stays with 0 days)."""
    from rtcbot.context import BotContext
    from rtcbot.matrix.notices import Notices
    from rtcbot.metrics import Metrics
    from rtcbot.recording.recovery import RecordingRecovery
    from rtcbot.recording.store import RecordingInProgress
    from rtcbot.tasks import Tasks
    from tests.unit.test_transcript_jobs import Room

    prefix = "2026-11-01_100000"
    files = recording(tmp_path, "room", prefix)
    rows = [RecordingInProgress("!room:localhost", prefix, str(tmp_path / "room"), 0)]

    class Rows:
        async def unfinished(self) -> list[RecordingInProgress]:
            return list(rows)

        async def finished(self, room_id: str, prefix: str) -> None:
            rows.clear()

    room = Room()
    settings = dataclasses.replace(
        Settings(),
        recording=dataclasses.replace(
            RecordingSettings(), directory=str(tmp_path), retention_days=0
        ),
    )
    log = logging.getLogger("test.recovery")
    ctx = BotContext(
        client=room,  # type: ignore[arg-type]
        http=None,  # type: ignore[arg-type]
        db=None,  # type: ignore[arg-type]
        notices=Notices(room),  # type: ignore[arg-type]
        metrics=Metrics(),
        log=log,
        settings=lambda: settings,
        tasks=Tasks(log),
    )
    recovery = RecordingRecovery(ctx, Rows())  # type: ignore[arg-type]
    r = retention(tmp_path, 0)
    r.listed = recovery.listed
    assert await r.apply_once() == [] and all(f.exists() for f in files)
    assert await recovery.recover() == 1
    assert [name for name, _ in room.uploads] == [f.name for f in files]
    assert not any(f.exists() for f in files)  # posted, 0 days: gone
