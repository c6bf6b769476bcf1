"""Per-person opt-out on the real stack: `!call record optout [anonymous]` / `optin`.

Alice (440 Hz) and Bob (660 Hz) are real LiveKit peers with their Matrix users' identities;
the bot records the call. An opted-out person's tone must be absent from every file (their
own, the mix), from the very start or from the moment they opt out during the recording.
"""

from __future__ import annotations

import asyncio
import io
import time

import numpy as np
import pytest
import soundfile as sf

from rtcbot.rtc.identity import livekit_room_alias
from tests.integration.test_call_media import download
from tests.stack.matrix_user import MatrixUser, body, files_after
from tests.stack.peers import rms

pytestmark = pytest.mark.stack

RATE = 48_000


def band(samples: np.ndarray, tone: float) -> float:
    """Energy at `tone` (±5 Hz) relative to the spectrum's mean (20 = clearly there)."""
    if len(samples) < RATE // 2:
        return 0.0
    spectrum = np.abs(np.fft.rfft(samples.astype(float) * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / RATE)
    return float(spectrum[np.abs(freqs - tone) < 5].max() / (spectrum.mean() + 1e-9))


async def recorded_files(
    alice: MatrixUser, room: str, bot_id: str, after: str, n_min: int
) -> dict[str, np.ndarray]:
    """The bot's m.audio files posted after the event `after`: body → int16 samples."""
    files = {}
    for name, evt in (await files_after(alice, room, bot_id, after, n_min, 60)).items():
        data = await download(alice, evt["content"]["url"])
        samples, rate = sf.read(io.BytesIO(data), dtype="int16")
        assert rate == RATE
        files[name] = samples
    return files


async def two_people(make_user, bot_room: str, alice: MatrixUser, make_peer):  # type: ignore[no-untyped-def]
    bob = await make_user("bob")
    await bob.set_displayname("Bob Optout")
    await alice.invite(bot_room, bob.user_id)
    await bob.join(bot_room)
    lk_room = livekit_room_alias(bot_room)
    a = await make_peer(lk_room, f"{alice.user_id}:DEVA")
    await a.publish_tone(440)
    b = await make_peer(lk_room, f"{bob.user_id}:DEVB")
    await b.publish_tone(660)
    return bob


async def test_opted_out_voice_is_in_no_file(
    make_user, bot_room: str, alice: MatrixUser, bot_id: str, make_peer
) -> None:  # type: ignore[no-untyped-def]
    bob = await two_people(make_user, bot_room, alice, make_peer)
    # Anyone may opt out (power level 0): Bob is no moderator.
    reply = await bob.command(bot_room, "!call record opt out", bot_id)  # as the notices say
    assert body(reply).startswith("🙈 Bob Optout, your voice is left out"), body(reply)
    await alice.start_call(bot_room, bot_id)
    reply = await alice.command(bot_room, "!call record start", bot_id, timeout=30)
    print(f"\n[optout] {body(reply)}")
    # The notice says what is recorded, transcribed and captioned (the stack's defaults) and
    # how to opt out, in words that work for a level-0 member (test_permissions.py).
    assert "one file per person plus a mix" in body(reply), body(reply)
    assert "It is transcribed after the call and not captioned." in body(reply), body(reply)
    assert "!call record opt out leaves your voice out; anyone here" in body(reply), body(reply)
    await asyncio.sleep(6)
    status = await alice.command(bot_room, "!call record status", bot_id)
    assert "Recording for" in body(status) and "Bob" not in body(status), body(status)
    stopped = await alice.send_text(bot_room, "!call record stop")
    summary = await alice.wait_for(
        bot_room, lambda e: body(e).startswith("⏹️ Recording stopped"), 60, after=stopped
    )
    text = body(summary)
    print(f"[optout] summary: {text}")
    assert "Left out of the files, the mix and the transcript at their request: Bob Optout" in (
        text
    )
    assert "Bob Optout" not in text.split("Who spoke:")[1].split("\n")[0]
    files = await recorded_files(alice, bot_room, bot_id, summary["event_id"], 2)
    assert len(files) == 2, list(files)  # Alice's file and the mix: none for Bob
    assert not any("Bob" in name for name in files), list(files)
    for name, samples in files.items():
        print(f"[optout] {name}: 440 Hz {band(samples, 440):.1f}, 660 Hz {band(samples, 660):.1f}")
        assert band(samples, 440) > 20, (name, band(samples, 440))
        # Bob's tone is as loud as Alice's: absent = a thousand times weaker than hers.
        assert band(samples, 660) < band(samples, 440) / 1000, name

    # Opting in again: the next recording has Bob's voice.
    reply = await bob.command(bot_room, "!call record optin", bot_id)
    assert "recorded again" in body(reply), body(reply)
    reply = await alice.command(bot_room, "!call record start", bot_id, timeout=30)
    assert body(reply).startswith("🔴 Recording started"), body(reply)
    await asyncio.sleep(5)
    stopped = await alice.send_text(bot_room, "!call record stop")
    summary = await alice.wait_for(
        bot_room, lambda e: body(e).startswith("⏹️ Recording stopped"), 60, after=stopped
    )
    assert "Left out" not in body(summary)
    files = await recorded_files(alice, bot_room, bot_id, summary["event_id"], 3)
    bob_file = next(s for n, s in files.items() if "Bob Optout" in n)
    assert band(bob_file, 660) > 20


async def test_opting_out_during_a_recording_anonymously(
    make_user, bot_room: str, alice: MatrixUser, bot_id: str, make_peer
) -> None:  # type: ignore[no-untyped-def]
    bob = await two_people(make_user, bot_room, alice, make_peer)
    await alice.start_call(bot_room, bot_id)
    asked = time.monotonic()  # the recording's sample 0 is later than this
    reply = await alice.command(bot_room, "!call record start", bot_id, timeout=30)
    assert body(reply).startswith("🔴 Recording started"), body(reply)
    await asyncio.sleep(4)
    reply = await bob.command(bot_room, "!call record optout anonymous", bot_id)
    assert "(the recording running now too)" in body(reply), body(reply)
    assert "not who" in body(reply)
    # Applied before the reply was sent: at most this far into the files.
    applied_by = time.monotonic() - asked
    await asyncio.sleep(5)
    stopped = await alice.send_text(bot_room, "!call record stop")
    summary = await alice.wait_for(
        bot_room, lambda e: body(e).startswith("⏹️ Recording stopped"), 60, after=stopped
    )
    text = body(summary)
    print(f"[optout] summary: {text}; applied within {applied_by:.1f} s")
    # What he said before opting out stays (like what someone said before leaving); the line
    # about the opt-out does not name him.
    left_out = next(line for line in text.splitlines() if "Left out" in line)
    assert "1 person who asked not to be named" in left_out and "Bob" not in left_out
    files = await recorded_files(alice, bot_room, bot_id, summary["event_id"], 3)
    mix = next(s for n, s in files.items() if n.startswith("Mix"))
    bob_file = next(s for n, s in files.items() if "Bob Optout" in n)
    # Before: Bob is in his file and the mix. After (+1 s for the codec's frames): nowhere.
    assert band(bob_file, 660) > 20
    cut = int((applied_by + 1.0) * RATE)
    assert len(mix) - cut > 2 * RATE, (len(mix) / RATE, applied_by)
    assert band(mix[cut:], 440) > 20
    assert band(mix[cut:], 660) < band(mix[cut:], 440) / 1000
    assert rms(bob_file[cut:]) < 300  # his file: silence (the tone's RMS is 16 000)
