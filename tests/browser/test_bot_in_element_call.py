"""The bot as the real Element Call shows, plays and records it.

alice starts the room's call in Element Call (Chromium, fake microphone with a tone); then the
bot announces and records from commands in the room. What the browser must show: the bot's
tile with its status picture (blue "Announcer", then the red "● Recording" dot), never
"Waiting for media…"; and what it must play: the bot's voice, with about the energy of the
speech it said (Chromium's `totalAudioEnergy` of the bot's inbound stream, compared with the
same speech synthesised here).

A second test records two Element Call users (440 Hz and 660 Hz, the second joining later): each
one's file carries their tone and is named by their display name.

`RTCBOT_DOCS_SCREENSHOTS=1` writes the two screenshots to docs/ (element-call-announcing.png,
element-call-recording.png) instead of the test's temporary directory.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rtcbot.media.tts import available_engine, chime
from rtcbot.recording.consent import Consent, spoken_notice
from rtcbot.rtc.identity import livekit_identity, member_identity
from rtcbot.rtc.membership import CALL_MEMBER_TYPE, RTC_MEMBER_TYPE
from rtcbot_stack.stack import Stack
from tests.browser.conftest import ElementCallFactory
from tests.browser.element_call import ElementCallPage, Tile, TilePicture
from tests.conftest import UserFactory
from tests.stack.eventually import eventually
from tests.stack.matrix_user import MatrixUser, body, files_after, is_message_from

pytestmark = pytest.mark.stack

DOCS = Path(__file__).resolve().parents[2] / "docs"
LOUD = 0.01  # audioLevel (peak, 0..1) above which the bot is speaking
QUIET_S = 1.0  # seconds of received audio below LOUD that end an utterance


def webrtc_energy(samples: np.ndarray, rate: int = 48_000) -> float:
    """The `totalAudioEnergy` Chromium's inbound-rtp stats add while playing these samples.

    WebRTC's AudioLevel (receive side) adds level² × 0.01 s per 10 ms frame, where level is
    the audioLevel shown at that moment: the peak of the 11 frames before the last update
    (updated every 11th frame; the running peak then decays to a quarter). For a steady tone
    that is its peak; for speech it is well above the per-frame peaks (measured here: this
    model gave 0.956 for speech + chime where the browser reported 0.963)."""
    n = rate // 100
    frames = samples[: len(samples) // n * n].astype(np.int32).reshape(-1, n)
    energy = 0.0
    running = level = 0
    for i, peak in enumerate(np.abs(frames).max(axis=1).tolist()):
        running = max(running, peak)
        if i % 11 == 10:
            level, running = running, running >> 2
        energy += (level / 32767.0) ** 2 * 0.01
    return energy


async def speech_energy(text: str) -> tuple[float, float]:
    """(energy, seconds) of `text` as the bot speaks it (the same espeak-ng here)."""
    engine = available_engine()
    assert engine is not None, "espeak-ng is needed for this test (make setup installs it)"
    samples = await engine.synthesize(text)
    return webrtc_energy(samples), len(samples) / 48_000


@dataclass
class Utterance:
    energy: float  # totalAudioEnergy received in the utterance
    loud_s: float  # received audio (totalSamplesDuration) between first and last loud poll
    peak_level: float


async def next_utterance(
    page: ElementCallPage, identity: str, base_energy: float, timeout: float = 60
) -> Utterance:
    """What the page plays from `identity` next: from its first loud moment until its stream
    has been quiet for QUIET_S seconds of received audio (Chromium's audio clock, not the
    wall clock). `base_energy`: the stream's totalAudioEnergy before the speech was asked
    for (0 when the stream did not exist yet)."""
    deadline = time.monotonic() + timeout
    first_loud: float | None = None
    last_loud = 0.0
    peak = 0.0
    while True:
        a = (await page.audio_by_identity()).get(identity)
        if a is not None:
            if a.audio_level > LOUD:
                if first_loud is None:
                    first_loud = a.total_samples_duration
                last_loud = a.total_samples_duration
                peak = max(peak, a.audio_level)
            elif first_loud is not None and a.total_samples_duration - last_loud >= QUIET_S:
                return Utterance(a.total_audio_energy - base_energy, last_loud - first_loud, peak)
        if time.monotonic() > deadline:
            raise await page.fail(f"no complete utterance from {identity} within {timeout:g} s")
        await asyncio.sleep(0.1)


def bot_tile(tiles: list[Tile], name: str) -> Tile | None:
    return next((t for t in tiles if t.name == name), None)


def bot_picture(pictures: list[TilePicture], name: str) -> TilePicture | None:
    return next((p for p in pictures if p.name == name and p.mean_rgb is not None), None)


async def wait_for_picture(
    page: ElementCallPage,
    name: str,
    wanted: str,
    ok: Callable[[TilePicture], bool],
    timeout: float = 30,
) -> TilePicture:
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = bot_picture(await page.tile_pictures(), name)
        if last is not None and ok(last):
            return last
        if time.monotonic() > deadline:
            raise await page.fail(f"the bot's tile does not show {wanted}: {last}")
        await asyncio.sleep(0.25)


def is_announcer_picture(p: TilePicture) -> bool:
    assert p.mean_rgb is not None
    r, _g, b = p.mean_rgb
    return b > r + 20 and p.red_share < 0.001  # blue, no red dot


def is_recording_picture(p: TilePicture) -> bool:
    assert p.mean_rgb is not None
    r, _g, b = p.mean_rgb
    return p.red_share > 0.004 and abs(b - r) < 30  # dark grey with the red dot


def screenshot_path(tmp_path: Path, name: str, rtc_mode: str) -> Path:
    """docs/ holds the pictures of Element Call's default mode."""
    docs = os.environ.get("RTCBOT_DOCS_SCREENSHOTS") and rtc_mode == "compatibility"
    return (DOCS if docs else tmp_path) / name


MODES = [
    pytest.param("compatibility", id="compatibility"),
    pytest.param("matrix_2_0", id="matrix_2_0"),
    pytest.param("legacy", id="legacy"),  # Element Call 0.25.0, the last build with it
]


@pytest.mark.parametrize("rtc_mode", MODES)
async def test_bot_is_seen_and_heard_in_element_call(
    rtc_mode: str,
    stack: Stack,
    alice: MatrixUser,
    bot_id: str,
    bot_room: str,
    element_call: ElementCallFactory,
    tmp_path: Path,
) -> None:
    me = member_identity(bot_id, str(stack.bot["device_id"]))
    bot_name = bot_id[1:].split(":")[0]  # its display name (Synapse's default: the localpart)
    await alice.set_displayname("Alice")
    before = (await alice.messages(bot_room, 1))[-1]["event_id"]
    page = await element_call(alice, bot_room, rtc_mode=rtc_mode)
    await alice.wait_for(
        bot_room, lambda e: is_message_from(e, bot_id) and "started a" in body(e), 20, before
    )

    # (1) `!call announce`: heard in the browser, from the bot's membership identity.
    text = "Hello from the bot. This announcement is heard in Element Call."
    said, said_s = await speech_energy(text)
    with_chime = said + webrtc_energy(chime())
    heard_task = asyncio.create_task(
        page.wait_for_audio(me, min_power=1e-3, window=0.5, timeout=60)
    )
    utterance_task = asyncio.create_task(next_utterance(page, me, 0.0))
    reply = await alice.command(bot_room, f"!call announce {text}", bot_id, timeout=60)
    assert "spoken in the call" in body(reply), body(reply)
    heard = await heard_task
    spoken = await utterance_task
    print(
        f"[bot-in-ec] announce: {heard}; utterance {spoken}; expected energy {said:.3f} "
        f"(+ chime {with_chime:.3f}) for {said_s:.1f} s of speech"
    )
    # About the whole speech: not a blip (≥ 60 % of its energy), not more than it and the
    # join chime (+ 40 % for the codec and where the level windows fall).
    assert 0.6 * said <= spoken.energy <= 1.4 * with_chime, (spoken, said, with_chime)

    tiles = await page.wait_for_tiles(
        lambda ts: (t := bot_tile(ts, bot_name)) is not None and not t.waiting_for_media,
        "the bot's tile with media",
    )
    tile = bot_tile(tiles, bot_name)
    assert tile is not None and tile.video_enabled and not tile.waiting_for_media, tiles
    pic = await wait_for_picture(
        page, bot_name, "the blue Announcer picture", is_announcer_picture
    )
    shot = await page.screenshot(
        screenshot_path(tmp_path, "element-call-announcing.png", rtc_mode)
    )
    print(f"[bot-in-ec] announcing: tiles {tiles}; picture {pic}; screenshot {shot}")

    # (2) `!call record start`: the spoken consent notice is heard; the tile says "● Recording".
    # The stack's defaults: transcripts on, captions off.
    said_consent = spoken_notice("call", Consent(transcribed=True, captioned=False))
    consent, consent_s = await speech_energy(said_consent)
    base = (await page.audio_by_identity())[me].total_audio_energy
    utterance_task = asyncio.create_task(next_utterance(page, me, base))
    reply = await alice.command(bot_room, "!call record start", bot_id, timeout=60)
    assert body(reply).startswith("🔴 Recording started"), body(reply)
    notice = await utterance_task
    print(f"[bot-in-ec] consent: {notice}; expected {consent:.3f} for {consent_s:.1f} s")
    assert 0.6 * consent <= notice.energy <= 1.4 * consent, (notice, consent)

    pic = await wait_for_picture(page, bot_name, "the red ● Recording dot", is_recording_picture)
    tiles = await page.tiles()
    tile = bot_tile(tiles, bot_name)
    assert tile is not None and tile.video_enabled and not tile.waiting_for_media, tiles
    shot = await page.screenshot(screenshot_path(tmp_path, "element-call-recording.png", rtc_mode))
    print(f"[bot-in-ec] recording: tiles {tiles}; picture {pic}; screenshot {shot}")

    # (3) `!call record stop`: the bot says so, posts the recording and leaves the call; its
    # membership goes before its participant, so its tile never says "Waiting for media…".
    waiting: list[Tile] = []

    async def watch_tile() -> None:
        deadline = time.monotonic() + 60
        while (tile := bot_tile(await page.tiles(), bot_name)) is not None:
            if tile.waiting_for_media:
                waiting.append(tile)
            if time.monotonic() > deadline:
                raise await page.fail("the bot's tile did not go away")
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch_tile())
    stopped = await alice.send_text(bot_room, "!call record stop")
    summary = await alice.wait_for(
        bot_room, lambda e: body(e).startswith("⏹️ Recording stopped"), 60, after=stopped
    )
    print(f"[bot-in-ec] {body(summary)!r}")
    await watcher
    assert not waiting, waiting


async def ec_identity(user: MatrixUser, room_id: str, rtc_mode: str, after: str) -> str:
    """The LiveKit identity of `user`'s Element Call in this mode, from the membership it
    sent: `user:device` for a state membership (compatibility, legacy); the MSC4195 hash of
    a sticky one (matrix_2_0)."""
    kind = RTC_MEMBER_TYPE if rtc_mode == "matrix_2_0" else CALL_MEMBER_TYPE
    sent = await user.wait_for(
        room_id,
        lambda e: e.get("type") == kind and e.get("sender") == user.user_id and e["content"],
        timeout=20,
        after=after,
    )
    content = sent["content"]
    print(f"[bot-in-ec] {rtc_mode}: {user.user_id} sent {kind} {json.dumps(content)[:400]}")
    if rtc_mode != "matrix_2_0":
        return member_identity(user.user_id, user.device_id)
    member = content["member"]
    return livekit_identity(user.user_id, member["device_id"], member["id"])


async def download(user: MatrixUser, mxc: str) -> bytes:
    server, media_id = mxc.removeprefix("mxc://").split("/", 1)
    url = user.api.base_url / "_matrix/client/v1/media/download" / server / media_id
    headers = {"Authorization": f"Bearer {user.access_token}"}
    async with user.api.session.get(url, headers=headers) as r:
        assert r.status == 200, r.status
        return await r.read()


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    x = samples.astype(np.float64) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(x))
    spectrum[0] = 0
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


@pytest.mark.parametrize("rtc_mode", MODES)
async def test_recording_of_two_element_call_users_names_files_by_display_name(
    rtc_mode: str,
    stack: Stack,
    alice: MatrixUser,
    make_user: UserFactory,
    bot_id: str,
    bot_room: str,
    element_call: ElementCallFactory,
) -> None:
    """alice (440 Hz) starts the call and the recording; bob (660 Hz) joins later. The bot's
    per-speaker files carry each one's tone and are named by their Element Call display names."""
    bob = await make_user("bob")
    await alice.set_displayname("Alice Example")
    await bob.set_displayname("Bob Example")
    await alice.invite(bot_room, bob.user_id)
    await bob.join(bot_room)
    before = (await alice.messages(bot_room, 1))[-1]["event_id"]
    alice_page = await element_call(alice, bot_room, tone_hz=440, rtc_mode=rtc_mode)
    alice_identity = await ec_identity(alice, bot_room, rtc_mode, before)
    await alice.wait_for(
        bot_room, lambda e: is_message_from(e, bot_id) and "started a" in body(e), 20, before
    )
    reply = await alice.command(bot_room, "!call record start", bot_id, timeout=60)
    assert body(reply).startswith("🔴 Recording started"), body(reply)

    bob_page = await element_call(bob, bot_room, tone_hz=660, rtc_mode=rtc_mode)
    bob_identity = await ec_identity(bob, bot_room, rtc_mode, before)
    # alice's browser plays bob's tone: it flows through the SFU, so the recorder gets it too.
    heard = await alice_page.wait_for_audio(bob_identity, min_power=0.05, window=1.0)
    await bob_page.wait_for_audio(alice_identity, min_power=0.05, window=1.0)
    print(f"[bot-in-ec] alice hears bob: {heard}")

    async def both_recorded() -> bool:
        status = await alice.command(bot_room, "!call record status", bot_id)
        return "Alice Example" in body(status) and "Bob Example" in body(status)

    await eventually(
        both_recorded, timeout=30, what="both speakers in the recording", interval=0.5
    )
    stopped = await alice.send_text(bot_room, "!call record stop")
    summary = await alice.wait_for(
        bot_room, lambda e: body(e).startswith("⏹️ Recording stopped"), 60, after=stopped
    )
    print(f"[bot-in-ec] {body(summary)!r}")
    assert "Alice Example" in body(summary) and "Bob Example" in body(summary), body(summary)
    assert "(stopped by Alice Example)" in body(summary), body(summary)  # a name, no user ID

    files = await files_after(alice, bot_room, bot_id, stopped, 3)
    print(f"[bot-in-ec] files: {sorted(files)}")
    for person, device, tone in (
        ("Alice Example", alice.device_id, 440),
        ("Bob Example", bob.device_id, 660),
    ):
        label = next((k for k in files if k.startswith(f"{person} ({device})")), None)
        assert label is not None, (person, sorted(files))
        stem = person.replace(" ", "_")
        assert label.endswith(f"-{stem}-{device}.ogg"), label
        data = await download(alice, files[label]["content"]["url"])
        samples, rate = sf.read(io.BytesIO(data), dtype="int16")
        loud = np.flatnonzero(np.abs(samples) > 2000)
        assert len(loud) > rate // 2, (label, len(loud) / rate)
        last_second = samples[max(loud[0], loud[-1] - rate) : loud[-1]]  # contiguous
        assert abs(dominant_hz(last_second, rate) - tone) < 10, label

    # In every mode the bot follows the call: it said that bob joined, and says that he left.
    said = [body(e) for e in await alice.messages(bot_room, 60) if is_message_from(e, bot_id)]
    assert any("Bob Example joined" in n for n in said), said
    hung_up = (await alice.messages(bot_room, 1))[-1]["event_id"]
    await bob_page.hang_up()
    left = await alice.wait_for(
        bot_room,
        lambda e: is_message_from(e, bot_id) and "Bob Example left" in body(e),
        60,
        hung_up,
    )
    print(f"[bot-in-ec] {rtc_mode}: {body(left)!r}")
