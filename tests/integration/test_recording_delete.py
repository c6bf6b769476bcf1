"""`!call record delete last` and `!call search` on the real stack: a recording with its
transcript, found by search (in this room only, not after an opt-out), then gone.

Two peers with real users' identities speak; the bot records and transcribes (Whisper tiny.en
from its wheel). A member at level 0 may not delete it; the moderator's `delete last` redacts
the summary, the three audio messages and the bot's transcript messages (what anyone in the
room then sees: redacted events, no content), removes the files from the bot's disk, and a
second `delete last` finds nothing more to delete.
"""

from __future__ import annotations

from typing import Any

import pytest

from rtcbot_stack.stack import Stack
from tests.integration.test_call_media import is_audio
from tests.integration.test_transcripts import (
    A1,
    ALICE,
    B1,
    LINE,
    Event,
    edits_of,
    record_while,
    room_with_two_people,
    thread_root,
    until_found,
    words_of,
)
from tests.stack.matrix_user import body
from tests.stack.peers import speech

pytestmark = pytest.mark.stack


def redacted(evt: Event) -> bool:
    return "redacted_because" in evt.get("unsigned", {}) and not evt.get("content")


async def test_a_moderator_deletes_the_latest_recording_with_its_transcript_and_files(
    stack: Stack, make_user: Any, make_peer: Any, bot_id: str
) -> None:
    alice, bob, room, pa, pb = await room_with_two_people(make_user, make_peer, bot_id)
    summary = await record_while(alice, room, bot_id, [(pa, speech(A1)), (pb, speech(B1))])
    sid = summary["event_id"]

    def transcript_ready(events: list[Event]) -> bool:
        first = [
            e
            for e in events
            if e.get("sender") == bot_id
            and thread_root(e) == sid
            and body(e).startswith("📝 Transcrib")
        ]
        done = edits_of(events, first[0]["event_id"]) if first else []
        return bool(done) and done[-1].startswith("📝 Transcript ready")

    await until_found(alice, room, transcript_ready, 240, "the transcript to be ready")
    events = await alice.messages(room, 100)
    audio = [e for e in events if is_audio(e, bot_id)]
    thread = [e for e in events if e.get("sender") == bot_id and thread_root(e) == sid]
    assert len(audio) == 3 and len(thread) >= 3, (len(audio), [body(e) for e in thread])
    names = [str(e["content"]["body"]).rsplit(" — ", 1)[1] for e in audio]
    on_disk = [p for n in names for p in stack.settings.state_dir.rglob(n)]
    assert len(on_disk) == 3, (names, on_disk)

    # Search (any member): a word only Bob said finds his line, with a link to the transcript;
    # a word Alice said finds hers. Words are taken from the transcript as Whisper heard them.
    text = body(next(e for e in thread if body(e).startswith("📝 Transcript (")))
    said: dict[str, set[str]] = {}
    for raw in text.splitlines()[1:]:
        m = LINE.match(raw)
        assert m, raw
        who = "bob" if "Brook" in m.group(3) else "alice"
        said.setdefault(who, set()).update(w for w in words_of(m.group(4)) if len(w) >= 5)
    bobs = sorted(said["bob"] - said["alice"])[0]
    alices = sorted(said["alice"] - said["bob"])[0]
    found = body(await bob.command(room, f"!call search {bobs}", bot_id))
    print(f"[search] {found!r}")
    assert found.startswith(f"🔎 “{bobs}”") and "Brook" in found, found
    assert "(https://matrix.to/#/" in found and "transcript" in found, found
    # Another room with the bot knows nothing of this room's calls.
    other = await alice.create_room(invite=[bot_id], name="another room")
    await alice.wait_for_member(other, bot_id)
    elsewhere = body(await alice.command(other, f"!call search {bobs}", bot_id))
    assert elsewhere.startswith("🔎 Nothing found"), elsewhere
    # Bob opts out: his words leave the search; Alice's stay.
    out = body(await bob.command(room, "!call record opt out", bot_id))
    assert "leave this room's search" in out, out
    gone = body(await alice.command(room, f"!call search {bobs}", bot_id))
    assert gone.startswith("🔎 Nothing found"), gone
    kept = body(await alice.command(room, f"!call search {alices}", bot_id))
    assert kept.startswith(f"🔎 “{alices}”") and ALICE in kept, kept

    usage = await alice.command(room, "!call record delete", bot_id)
    assert "record delete last" in body(usage), body(usage)

    # Bob is in the room at level 0: deleting is for moderators (permissions.record_delete).
    refused = await bob.command(room, "!call record delete last", bot_id)
    assert not body(refused).startswith("🗑️"), body(refused)
    assert all(p.exists() for p in on_disk)

    done = await alice.command(room, "!call record delete last", bot_id, timeout=60)
    text = body(done)
    print(f"[delete] {text!r}")
    want = 1 + len(audio) + len(thread)
    assert text.startswith("🗑️ ") and f"{want} messages redacted, 3 files removed" in text, (
        text,
        want,
    )
    assert not any(p.exists() for p in on_disk), on_disk
    after = {e["event_id"]: e for e in await alice.messages(room, 100)}
    for evt in [summary, *audio, *thread]:
        assert redacted(after[evt["event_id"]]), after[evt["event_id"]]

    deleted = body(await alice.command(room, f"!call search {alices}", bot_id))
    assert deleted.startswith("🔎 Nothing found"), deleted  # the deleted recording's words

    again = await alice.command(room, "!call record delete last", bot_id)
    assert body(again).startswith("There is no posted recording"), body(again)
