"""Live captions on the real stack: two LiveKit peers speak known sentences (espeak-ng) one
after the other while the bot records with captions on; each sentence must appear in the
captions thread, attributed to its speaker, while the recording still runs.
"""

from __future__ import annotations

import difflib
import re
import time
from typing import Any

import numpy as np
import pytest

from rtcbot.rtc.identity import livekit_room_alias
from tests.stack.eventually import eventually
from tests.stack.matrix_user import MatrixUser, body
from tests.stack.peers import speech

pytestmark = pytest.mark.stack

ALICE_SAYS = "The weather today is sunny and warm with a gentle breeze"
BOB_SAYS = "Please remember to send the quarterly report before Friday"


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def matched(said: str, heard: str) -> float:
    """Share of the sentence's words found, in order, in what was captioned."""
    ref = words(said)
    m = difflib.SequenceMatcher(a=ref, b=words(heard), autojunk=False)
    return sum(b.size for b in m.get_matching_blocks()) / len(ref)


def captions_of(events: list[dict[str, Any]], root: str) -> list[tuple[str, str]]:
    """(speaker, text) of the thread's caption messages, oldest first."""
    out = []
    for e in events:
        rel = e.get("content", {}).get("m.relates_to") or {}
        if rel.get("rel_type") == "m.thread" and rel.get("event_id") == root:
            m = re.match(r"(.+?) \((\d\d:\d\d:\d\d)\): (.*)", body(e), re.S)
            if m:
                out.append((m.group(1), m.group(3)))
    return out


async def wait_for_caption(
    alice: MatrixUser, room: str, root: str, speaker: str, said: str, timeout: float = 90
) -> tuple[float, str]:
    async def heard_it() -> tuple[float, str] | None:
        caps = captions_of(await alice.messages(room, 100), root)
        heard = " ".join(t for s, t in caps if s == speaker)
        return (time.monotonic(), heard) if matched(said, heard) >= 0.6 else None

    what = f"a caption of {speaker} saying {said!r}"
    return await eventually(heard_it, timeout=timeout, what=what, interval=0.5)


async def test_live_captions_attribute_each_speaker(
    make_user, bot_room: str, alice: MatrixUser, bot_id: str, make_peer
) -> None:  # type: ignore[no-untyped-def]
    await alice.set_displayname("Alice Caption")
    bob = await make_user("bob")
    await bob.set_displayname("Bob Caption")
    await alice.invite(bot_room, bob.user_id)
    await bob.join(bot_room)
    lk_room = livekit_room_alias(bot_room)
    a = await make_peer(lk_room, f"{alice.user_id}:DEVA")
    b = await make_peer(lk_room, f"{bob.user_id}:DEVB")
    await a.publish_samples(np.zeros(0, dtype=np.int16))
    await b.publish_samples(np.zeros(0, dtype=np.int16))
    await alice.start_call(bot_room, bot_id)

    reply = await alice.command(bot_room, "!call captions on", bot_id)
    assert "Live captions are on" in body(reply), body(reply)
    asked = await alice.send_text(bot_room, "!call record start")
    await alice.wait_for(
        bot_room, lambda e: body(e).startswith("🔴 Recording started"), 30, after=asked
    )
    a.play(speech(ALICE_SAYS))
    await a.played.wait()
    spoken_a = time.monotonic()
    # The thread opens with the first caption (no empty thread for a silent recording).
    root_evt = await alice.wait_for(
        bot_room,
        lambda e: body(e).startswith("💬 Live captions of this recording"),
        90,
        after=asked,
    )
    root = root_evt["event_id"]
    seen_a, heard_a = await wait_for_caption(alice, bot_room, root, "Alice Caption", ALICE_SAYS)
    b.play(speech(BOB_SAYS))
    await b.played.wait()
    spoken_b = time.monotonic()
    seen_b, heard_b = await wait_for_caption(alice, bot_room, root, "Bob Caption", BOB_SAYS)
    print(
        f"[captions] Alice: {heard_a!r} {seen_a - spoken_a:.1f} s after she finished; "
        f"Bob: {heard_b!r} {seen_b - spoken_b:.1f} s after he finished"
    )
    # Live: both were captioned while the recording ran (it is stopped only now).
    stopped = await alice.send_text(bot_room, "!call record stop")
    await alice.wait_for(
        bot_room, lambda e: body(e).startswith("⏹️ Recording stopped"), 60, after=stopped
    )
    events = await alice.messages(bot_room, 100)
    caps = captions_of(events, root)
    thread = [
        body(e)
        for e in events
        if e["event_id"] == root
        or (e.get("content", {}).get("m.relates_to") or {}).get("event_id") == root
    ]
    print("[captions] the thread:\n" + "\n".join(thread))
    # Attribution: nothing of Bob's sentence under Alice's name, and the other way round.
    alice_text = " ".join(t for s, t in caps if s == "Alice Caption")
    bob_text = " ".join(t for s, t in caps if s == "Bob Caption")
    assert matched(BOB_SAYS, alice_text) < 0.3 and matched(ALICE_SAYS, bob_text) < 0.3, caps
    assert {s for s, _ in caps} == {"Alice Caption", "Bob Caption"}, caps

    # Off: the next recording has no captions thread.
    asked = await alice.send_text(bot_room, "!call captions off")
    await alice.wait_for(bot_room, lambda e: "Live captions are off" in body(e), 30, after=asked)
    asked = await alice.send_text(bot_room, "!call record start")
    await alice.wait_for(
        bot_room, lambda e: body(e).startswith("🔴 Recording started"), 30, after=asked
    )
    a.play(speech(ALICE_SAYS))
    await a.played.wait()
    stopped = await alice.send_text(bot_room, "!call record stop")
    await alice.wait_for(
        bot_room, lambda e: body(e).startswith("⏹️ Recording stopped"), 60, after=stopped
    )
    events = await alice.messages(bot_room, 100)
    ids = [e["event_id"] for e in events]
    later = events[ids.index(asked) :]
    assert not any(body(e).startswith("💬 Live captions of this recording") for e in later)
