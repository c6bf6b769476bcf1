"""The bot in an end-to-end encrypted Element Call call: media keys over Olm, LiveKit frames
encrypted per participant (rtc/e2ee_keys.py, e2ee/call_keys.py, media/frame_keys.py).

The room is created encrypted (`m.room.encryption` in its initial state) by alice's js-sdk
client with Rust crypto (tests/crypto_client), which sends the commands and reads the bot's
encrypted answers and attachments. Each person's Element Call runs in Chromium on a device of
its own (its own Rust crypto in the browser, keys in IndexedDB), so Element Call encrypts its
media by itself, as in any encrypted room: the SFU reports its tracks as GCM-encrypted, and
that is asserted, so a test that passed on plaintext media could not pass here.

- the recording: alice (440 Hz) and bob (660 Hz, joining later); the files, downloaded and
  decrypted here, hold one file per speaker with the right tone, and a mix with both;
- the announcement is heard in alice's Element Call, with no decryption error in its console;
- bob leaves and carol joins while recording: everyone's keys rotate (the bot's log says so,
  never a key), and alice's file has no gap longer than 2 s.
"""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from livekit import api
from mautrix.crypto.attachments import decrypt_attachment

from rtcbot.rtc.identity import livekit_identity, livekit_room_alias, member_identity
from rtcbot.rtc.membership import CALL_MEMBER_TYPE, RTC_MEMBER_TYPE
from rtcbot.rtc.state_keys import make_state_key
from rtcbot_stack.stack import Stack
from tests.browser.conftest import ElementCallFactory
from tests.browser.element_call import ElementCallPage
from tests.conftest import UserFactory
from tests.crypto_client import fixtures
from tests.crypto_client.client import CryptoClient, Message
from tests.crypto_client.fixtures import CryptoUserFactory
from tests.stack.eventually import eventually
from tests.stack.matrix_user import MatrixUser

pytestmark = pytest.mark.stack
crypto_driver = fixtures.crypto_driver
make_crypto_user = fixtures.make_crypto_user

TONES = {"alice": 440.0, "bob": 660.0, "carol": 880.0}
LOUD = 2000  # int16 amplitude: the fake microphones play their tone at 0.5 (16 000)
# livekit-client's errors when it cannot decrypt (MissingKey, InvalidKey, DecryptionFailed).
DECRYPT_ERRORS = re.compile(r"EncryptionError|MissingKey|InvalidKey|DecryptionFailure")


# -- people -----------------------------------------------------------------------------------
async def ec_device(stack: Stack, user_id: str, device: str, display_name: str) -> MatrixUser:
    """Another device of the same account for Element Call in the browser (its crypto store
    must not be shared with the test's js-sdk client)."""
    login = stack.synapse.login(user_id[1:].split(":")[0], "pw", device)
    user = MatrixUser(stack.synapse.url, login["user_id"], login["access_token"], device)
    await user.set_displayname(display_name)
    return user


async def person(make_user: UserFactory, name: str) -> MatrixUser:
    """A user whose only device is the one of its Element Call (which makes its own crypto):
    one device per person keeps Element Call's Olm work (a session per device) small."""
    user = await make_user(name)
    await user.set_displayname(f"{name.title()} Example")
    return user


# -- what the SFU and the bot's log say -------------------------------------------------------
async def track_encryption(stack: Stack, room_id: str) -> dict[str, list[str]]:
    """Identity → encryption of each published track (LiveKit's TrackInfo.encryption)."""
    lk = api.LiveKitAPI(
        stack.livekit.url, stack.secrets["livekit_api_key"], stack.secrets["livekit_api_secret"]
    )
    try:
        resp = await lk.room.list_participants(
            api.ListParticipantsRequest(room=livekit_room_alias(room_id))
        )
    finally:
        await lk.aclose()
    return {
        p.identity: [api.Encryption.Type.Name(t.encryption) for t in p.tracks]
        for p in resp.participants
    }


async def wait_encrypted(
    stack: Stack, room_id: str, identity: str, timeout: float = 30
) -> list[str]:
    async def published() -> list[str]:
        return list((await track_encryption(stack, room_id)).get(identity) or [])

    return await eventually(
        published, timeout=timeout, what=f"{identity} publishing", interval=0.5
    )


def log_since(stack: Stack, offset: int) -> str:
    return stack.maubot.child.log_path.read_text(errors="replace")[offset:]


def log_size(stack: Stack) -> int:
    return len(stack.maubot.child.log_path.read_text(errors="replace"))


async def wait_log(stack: Stack, pattern: str, offset: int, timeout: float = 60) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while True:
        m = re.search(pattern, log_since(stack, offset))
        if m is not None:
            return m
        assert time.monotonic() < deadline, f"no {pattern!r} in the maubot log"
        await asyncio.sleep(0.5)


# -- the bot's encrypted attachments ----------------------------------------------------------
async def bot_files(
    alice: CryptoClient, room_id: str, bot_id: str, after: str, count: int, timeout: float = 60
) -> dict[str, Message]:
    """The bot's m.audio messages after `after`, by body, once there are `count`."""
    deadline = time.monotonic() + timeout
    while True:
        msgs = await alice.messages(room_id)
        ids = [m.event_id for m in msgs]
        start = ids.index(after) + 1 if after in ids else 0
        files = {
            m.body: m
            for m in msgs[start:]
            if m.sender == bot_id and m.content.get("msgtype") == "m.audio"
        }
        if len(files) >= count:
            return files
        assert time.monotonic() < deadline, f"the bot posted {sorted(files)}"
        await asyncio.sleep(0.5)


async def decrypted_audio(user: MatrixUser, msg: Message) -> tuple[np.ndarray, int]:
    """Download an encrypted attachment (content.file), check and decrypt it, decode the Ogg."""
    file = msg.content["file"]
    assert "url" not in msg.content, msg.content  # never a plaintext copy
    server, media_id = file["url"].removeprefix("mxc://").split("/", 1)
    url = user.api.base_url / "_matrix/client/v1/media/download" / server / media_id
    async with user.api.session.get(
        url, headers={"Authorization": f"Bearer {user.access_token}"}
    ) as r:
        assert r.status == 200, r.status
        cipher = await r.read()
    plain = decrypt_attachment(cipher, file["key"]["k"], file["hashes"]["sha256"], file["iv"])
    samples, rate = sf.read(io.BytesIO(plain), dtype="int16")
    return np.asarray(samples), int(rate)


def undecrypted(summary: str) -> dict[str, float]:
    """The summary's "🔒 Audio I could not decrypt …: Alice Example 2 s, …" as name → s."""
    m = re.search(r"could not decrypt[^:]*: (.+)", summary)
    if m is None:
        return {}
    out = {}
    for part in m.group(1).split(", "):  # "Alice Example 2 s", "Bob Example 1 min 05 s"
        p = re.fullmatch(r"(.+?) (?:(\d+) min )?(\d+) s", part.strip())
        assert p is not None, part
        out[p.group(1)] = 60 * float(p.group(2) or 0) + float(p.group(3))
    return out


def spectrum_peaks(samples: np.ndarray, rate: int, freqs: list[float]) -> dict[float, float]:
    """Each frequency's share of the spectrum's energy (±10 Hz)."""
    x = samples.astype(np.float64)
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    bins = np.fft.rfftfreq(len(x), 1 / rate)
    total = float(power[bins > 50].sum()) or 1.0
    return {f: float(power[(bins > f - 10) & (bins < f + 10)].sum()) / total for f in freqs}


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    x = samples.astype(np.float64) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(x))
    spectrum[0] = 0
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def loud_span(samples: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(samples) > LOUD)
    assert len(loud), "no tone at all"
    return samples[loud[0] : loud[-1] + 1]


def longest_gap_s(samples: np.ndarray, rate: int) -> float:
    """The longest stretch without the tone between its first and last loud sample (20 ms
    windows: a window whose peak stays below LOUD counts as a gap)."""
    span = loud_span(samples)
    win = rate // 50
    peaks = np.abs(span[: len(span) // win * win].reshape(-1, win)).max(axis=1)
    longest = run = 0
    for quiet in peaks < LOUD:
        run = run + 1 if quiet else 0
        longest = max(longest, run)
    return longest * win / rate


async def sticky_membership(user: MatrixUser, room_id: str) -> dict[str, Any]:
    return await user.wait_for(
        room_id,
        lambda e: (
            e.get("type") == RTC_MEMBER_TYPE
            and e.get("sender") == user.user_id
            and bool(e.get("content"))
        ),
        timeout=30,
    )


async def identity_of(user: MatrixUser, room_id: str, rtc_mode: str) -> str:
    """The LiveKit identity of `user`'s Element Call (state: user:device; sticky: the hash)."""
    if rtc_mode != "matrix_2_0":
        await user.wait_for(
            room_id,
            lambda e: e.get("type") == CALL_MEMBER_TYPE and e.get("sender") == user.user_id,
            timeout=30,
        )
        return member_identity(user.user_id, user.device_id)
    member = (await sticky_membership(user, room_id))["content"]["member"]
    return livekit_identity(user.user_id, member["device_id"], member["id"])


async def console_report(page: ElementCallPage, who: str) -> list[str]:
    """What Element Call's console says about its crypto and its media encryption."""
    lines = await page.console_tail(4000)
    crypto = [
        x for x in lines if re.search(r"rust.?crypto|olm|e2ee|encrypt|MatrixKeyProvider", x, re.I)
    ]
    print(f"[encrypted-call] {who}'s console, crypto/E2EE lines ({len(crypto)} of {len(lines)}):")
    for line in crypto[:25]:
        print(f"    {line[:220]}")
    return crypto


async def join_call(
    element_call: ElementCallFactory,
    pages: dict[str, ElementCallPage],
    name: str,
    user: MatrixUser,
    room_id: str,
    rtc_mode: str,
) -> ElementCallPage:
    """`name`'s Element Call in the call (kept in `pages` before joining, for its console)."""
    page = pages[name] = await element_call(
        user, room_id, tone_hz=TONES[name], rtc_mode=rtc_mode, join=False
    )
    seconds = await page.join(60)
    print(f"[encrypted-call] {name} joined in {seconds:.1f} s")
    return page


async def dump_consoles(pages: dict[str, ElementCallPage], where: Path) -> None:
    """Every page's whole console into files (read them when a test fails)."""
    for who, page in pages.items():
        path = where / f"console-{who}.log"
        path.write_text("\n".join(await page.console_tail(20000)))
        print(f"[encrypted-call] {who}'s console: {path}")


def decrypt_errors(lines: list[str]) -> list[str]:
    """livekit-client's frame decryption errors (a participant's key missing or wrong)."""
    return [x for x in lines if DECRYPT_ERRORS.search(x) and "[error]" in x]


# -- the tests --------------------------------------------------------------------------------
# Element Call's default mode. Its matrix_2_0 mode cannot hold an encrypted call on this stack
# (EC 0.26.1, Synapse 1.163): its sticky m.rtc.member goes out Megolm-encrypted, and neither
# Element Call itself (no tile, "MissingKey" for its own media) nor the bot ever reads it back,
# so there is no call to record (docs/ELEMENT_CALL.md, "Encrypted calls").
MODES = [pytest.param("compatibility", id="compatibility")]


@pytest.fixture
async def pages(
    element_call: ElementCallFactory, tmp_path: Path
) -> AsyncIterator[dict[str, ElementCallPage]]:
    """The test's Element Call pages by person; their consoles are saved at the end (before
    element_call closes them)."""
    found: dict[str, ElementCallPage] = {}
    yield found
    await dump_consoles(found, tmp_path)


@dataclass
class EncryptedRoom:
    room_id: str
    alice: CryptoClient  # alice's js-sdk client: commands, the bot's encrypted answers
    alice_ec: MatrixUser  # alice's Element Call device
    marker: str  # an event before any call


async def encrypted_room(
    stack: Stack, bot_id: str, make_crypto_user: CryptoUserFactory, *others: MatrixUser
) -> EncryptedRoom:
    alice = await make_crypto_user("alice")
    room = await alice.create_encrypted_room([bot_id])
    await alice.wait_for_joined(room, bot_id)
    assert await alice.is_encrypted(room)
    alice_ec = await ec_device(stack, alice.user_id, "ALICEEC", "Alice Example")
    for other in others:
        await alice_ec.invite(room, other.user_id)
        await other.join(room)
    marker = await alice.send_text(room, "hello")
    return EncryptedRoom(room, alice, alice_ec, marker)


async def command(r: EncryptedRoom, bot_id: str, text: str, timeout: float = 60) -> Message:
    sent = await r.alice.send_text(r.room_id, text)
    reply = await r.alice.wait_for_message(r.room_id, bot_id, reply_to=sent, timeout=timeout)
    assert reply.encrypted and reply.decryption_failure is None, reply
    return reply


async def report_block(
    r: EncryptedRoom, bot_id: str, report_id: str, name: str, timeout: float = 30
) -> str:
    """Line `name` of the finished diagnostics report (edited in place) and its sub-lines."""
    deadline = time.monotonic() + timeout
    while True:
        edits = [
            m
            for m in await r.alice.messages(r.room_id)
            if m.sender == bot_id
            and m.content.get("m.relates_to", {}).get("rel_type") == "m.replace"
            and m.content.get("m.relates_to", {}).get("event_id") == report_id
        ]
        text = str(edits[-1].content.get("m.new_content", {}).get("body", "")) if edits else ""
        if text and "Checking" not in text:
            lines = text.splitlines()
            start = next((i for i, x in enumerate(lines) if f"{name}:" in x), None)
            assert start is not None, text
            end = next(
                (i for i in range(start + 1, len(lines)) if not lines[i].startswith("  ")),
                len(lines),
            )
            return "\n".join(lines[start:end])
        assert time.monotonic() < deadline, f"the report did not finish: {text}"
        await asyncio.sleep(0.5)


async def wait_recorded(r: EncryptedRoom, bot_id: str, *names: str, timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = await command(r, bot_id, "!call record status", timeout=30)
        if all(n in status.body for n in names):
            return
        assert time.monotonic() < deadline, f"the recording does not list {names}: {status.body}"
        await asyncio.sleep(1)


@pytest.mark.parametrize("rtc_mode", MODES)
async def test_encrypted_call_is_recorded_per_speaker(
    rtc_mode: str,
    stack: Stack,
    bot_id: str,
    make_crypto_user: CryptoUserFactory,
    make_user: UserFactory,
    element_call: ElementCallFactory,
    pages: dict[str, ElementCallPage],
) -> None:
    # The bot's call membership names its real, crypto-enabled device: Element Call sends its
    # media keys to exactly that device.
    bot_device = str(stack.bot["device_id"])
    client = stack.maubot.api("GET", f"/client/{bot_id}")
    assert client["device_id"] == bot_device and client.get("fingerprint"), client

    bob = await person(make_user, "bob")
    r = await encrypted_room(stack, bot_id, make_crypto_user, bob)
    alice, alice_ec, room = r.alice, r.alice_ec, r.room_id
    offset = log_size(stack)

    alice_page = await join_call(element_call, pages, "alice", alice_ec, room, rtc_mode)
    alice_id = await identity_of(alice_ec, room, rtc_mode)
    await alice.wait_for_message(room, bot_id, after=r.marker, contains="started a", timeout=30)
    crypto_lines = await console_report(alice_page, "alice")
    encryption = await wait_encrypted(stack, room, alice_id)
    print(f"[encrypted-call] {rtc_mode}: alice's tracks as the SFU sees them: {encryption}")
    assert encryption and all(e == "GCM" for e in encryption), encryption  # EC encrypts

    reply = await command(r, bot_id, "!call record start")
    assert reply.body.startswith("🔴 Recording started"), reply
    me = member_identity(bot_id, bot_device)
    # ... and its call membership names that device (no key would reach it otherwise).
    own = await alice_ec.get_state_event_full(
        room, CALL_MEMBER_TYPE, make_state_key(bot_id, bot_device)
    )
    assert own["content"]["device_id"] == bot_device, own
    assert own["content"]["membershipID"] == me, own
    bot_tracks = await wait_encrypted(stack, room, me)
    print(f"[encrypted-call] the bot's tracks: {bot_tracks}")
    assert all(e == "GCM" for e in bot_tracks), bot_tracks  # never plaintext into the call

    bob_page = await join_call(element_call, pages, "bob", bob, room, rtc_mode)
    bob_id = await identity_of(bob, room, rtc_mode)
    # The two browsers decrypt each other (proves Element Call's own E2EE works here).
    await alice_page.wait_for_audio(bob_id, min_power=0.05, window=1.0, timeout=60)
    await bob_page.wait_for_audio(alice_id, min_power=0.05, window=1.0, timeout=60)
    # The bot got both keys over Olm, authenticated, and decrypts both (its log, no key in it).
    for user in (alice_ec, bob):
        await wait_log(
            stack,
            r"media key index \d+ from " + re.escape(f"{user.user_id}/{user.device_id}"),
            offset,
        )
    for identity in (alice_id, bob_id):
        await wait_log(stack, r"frame decryption of " + re.escape(identity) + r": OK", offset)

    await wait_recorded(r, bot_id, "Alice Example", "Bob Example")
    # !call diag --verbose: the keys received from each member and each one's decryption.
    diag = await command(r, bot_id, "!call diag --verbose")
    block = await report_block(r, bot_id, diag.event_id, "Call media keys")
    print(f"[encrypted-call] !call diag:\n{block}")
    first = block.splitlines()[0]
    assert "✅" in first and "encrypted call: keys from 2 of 2" in first, block
    assert "decrypting 2 of 2" in block, block
    for member in (alice_ec, bob):
        assert re.search(
            re.escape(f"{member.user_id} ({member.device_id}): ") + r"\d+ keys?, .*"
            r"decryption OK for .*; my key sent .* ago",
            block,
        ), block
    await asyncio.sleep(3)  # both speak together for a while: the mix has both
    stop = await alice.send_text(room, "!call record stop")
    summary = await alice.wait_for_message(
        room, bot_id, after=stop, contains="Recording stopped", timeout=60
    )
    print(f"[encrypted-call] {rtc_mode}: {summary.body!r}")
    assert "Alice Example" in summary.body and "Bob Example" in summary.body, summary.body
    # Until a joiner's key reaches the bot its audio cannot be decrypted: said so, by name. How
    # long that takes is the key's trip through two syncs (16 s seen on a loaded 2-core machine),
    # so no bound here; both decrypt now (the log above) and both have a file (below).
    assert undecrypted(summary.body).keys() <= {"Alice Example", "Bob Example"}, summary.body

    files = await bot_files(alice, room, bot_id, stop, 3)
    print(f"[encrypted-call] files: {sorted(files)}")
    spans: list[tuple[int, int]] = []
    for name, user in (("Alice Example", alice_ec), ("Bob Example", bob)):
        label = next((k for k in files if k.startswith(f"{name} ({user.device_id})")), None)
        assert label is not None, (name, sorted(files))
        samples, rate = await decrypted_audio(alice_ec, files[label])
        tone = TONES[name.split()[0].lower()]
        span = loud_span(samples)
        heard = dominant_hz(span[-rate:], rate)
        print(f"[encrypted-call] {label}: {len(span) / rate:.1f} s of tone, {heard:.1f} Hz")
        assert len(span) > rate and abs(heard - tone) < 10, (label, heard)
        loud = np.flatnonzero(np.abs(samples) > LOUD)
        spans.append((int(loud[0]), int(loud[-1])))
    mix_label = next(k for k in files if k.startswith("Mix of everyone"))
    mix, rate = await decrypted_audio(alice_ec, files[mix_label])
    # Where both were decrypted: read from their own files (the same time axis as the mix);
    # how long each key took to arrive (16 s seen) must not decide the mix's proportions.
    both_from, both_to = max(a for a, _ in spans), min(b for _, b in spans)
    assert both_to - both_from > rate // 2, (spans, rate)
    peaks = spectrum_peaks(mix[both_from:both_to], rate, [TONES["alice"], TONES["bob"]])
    print(f"[encrypted-call] mix: share of 440 Hz / 660 Hz: {peaks}")
    assert peaks[TONES["alice"]] > 0.1 and peaks[TONES["bob"]] > 0.1, peaks

    errors = decrypt_errors(await alice_page.console_tail(4000))
    print(
        f"[encrypted-call] alice's console: {len(crypto_lines)} crypto lines; errors {errors[:5]}"
    )


def bot_decrypt_errors(lines: list[str], identity: str) -> list[str]:
    """livekit-client's errors about the bot's media (MissingKey, InvalidKey, …)."""
    return [x for x in lines if identity in x and DECRYPT_ERRORS.search(x) and "[error]" in x]


@pytest.mark.parametrize("rtc_mode", MODES)
async def test_announcement_is_heard_in_an_encrypted_call(
    rtc_mode: str,
    stack: Stack,
    bot_id: str,
    make_crypto_user: CryptoUserFactory,
    element_call: ElementCallFactory,
    pages: dict[str, ElementCallPage],
) -> None:
    r = await encrypted_room(stack, bot_id, make_crypto_user)
    page = await join_call(element_call, pages, "alice", r.alice_ec, r.room_id, rtc_mode)
    await r.alice.wait_for_message(
        r.room_id, bot_id, after=r.marker, contains="started a", timeout=30
    )
    me = member_identity(bot_id, str(stack.bot["device_id"]))
    heard = asyncio.create_task(page.wait_for_audio(me, min_power=1e-3, window=0.5, timeout=90))
    reply = await command(r, bot_id, "!call announce Hello from the bot, end to end encrypted.")
    assert "spoken in the call" in reply.body, reply.body
    got = await heard
    tracks = await track_encryption(stack, r.room_id)
    print(f"[encrypted-call] announce heard by alice: {got}; tracks {tracks}")
    assert tracks.get(me) and all(e == "GCM" for e in tracks[me]), tracks
    # The bot's status picture is encrypted like its voice: what Element Call shows of it.
    pictures = [p for p in await page.tile_pictures() if p.name == bot_id[1:].split(":")[0]]
    print(f"[encrypted-call] the bot's tile in alice's Element Call: {pictures}")
    lines = await page.console_tail(5000)
    errors = bot_decrypt_errors(lines, me)
    print(f"[encrypted-call] alice's console: {len(errors)} decryption errors about the bot")
    assert not errors, errors[:5]
    assert any(f"set participant sender key {me}" in x for x in lines), "no key from the bot"


def key_indexes(log: str, user: MatrixUser) -> list[int]:
    """The indexes of the media keys the bot received from that device, in order."""
    who = re.escape(f"{user.user_id}/{user.device_id}")
    return [int(i) for i in re.findall(r"media key index (\d+) from " + who, log)]


async def wait_key_after(
    stack: Stack, user: MatrixUser, offset: int, index: int, timeout: float = 60
) -> int:
    deadline = time.monotonic() + timeout
    while True:
        later = [i for i in key_indexes(log_since(stack, offset), user) if i != index]
        if later:
            return later[-1]
        assert time.monotonic() < deadline, f"no new key from {user.user_id} after {index}"
        await asyncio.sleep(0.5)


@pytest.mark.parametrize("rtc_mode", MODES)
async def test_keys_rotate_as_people_come_and_go_and_the_recording_has_no_gap(
    rtc_mode: str,
    stack: Stack,
    bot_id: str,
    make_crypto_user: CryptoUserFactory,
    make_user: UserFactory,
    element_call: ElementCallFactory,
    pages: dict[str, ElementCallPage],
) -> None:
    """bob leaves and carol joins during the recording: alice's Element Call and the bot
    rotate their keys (a member left), and alice's file goes on without a gap over 2 s."""
    bob = await person(make_user, "bob")
    carol = await person(make_user, "carol")
    r = await encrypted_room(stack, bot_id, make_crypto_user, bob, carol)
    room = r.room_id
    await join_call(element_call, pages, "alice", r.alice_ec, room, rtc_mode)
    bob_page = await join_call(element_call, pages, "bob", bob, room, rtc_mode)
    await r.alice.wait_for_message(room, bot_id, after=r.marker, contains="started a", timeout=30)
    offset = log_size(stack)
    reply = await command(r, bot_id, "!call record start")
    assert reply.body.startswith("🔴 Recording started"), reply.body
    await wait_recorded(r, bot_id, "Alice Example", "Bob Example")
    # Element Call sends its key to the bot when it sees the bot's membership (after its
    # rollout to bob, whose Olm session it makes first: seconds on a busy machine).
    for user in (r.alice_ec, bob):
        identity = member_identity(user.user_id, user.device_id)
        await wait_log(stack, r"frame decryption of " + re.escape(identity) + r": OK", offset)
    first = key_indexes(log_since(stack, offset), r.alice_ec)[-1]
    own = re.escape(f"the bot now encrypts its media in {room} with key index ")

    left_at = log_size(stack)
    await bob_page.hang_up()
    # A member left: alice's Element Call sends a new key (index + 1), and the bot rotates its
    # own and switches to it a second after sending it.
    after_leave = await wait_key_after(stack, r.alice_ec, left_at, first)
    bot_rotated = await wait_log(stack, own + r"(\d+)", left_at)
    print(
        f"[encrypted-call] bob left: alice's key {first} → {after_leave}, "
        f"the bot's key → {bot_rotated.group(1)}"
    )
    assert after_leave == (first + 1) % 256

    joined_at = log_size(stack)
    await join_call(element_call, pages, "carol", carol, room, rtc_mode)
    await wait_recorded(r, bot_id, "Alice Example", "Carol Example")
    await wait_log(stack, r"media key index \d+ from " + re.escape(carol.user_id), joined_at)
    await asyncio.sleep(3)  # alice and carol together for a while
    stop = await r.alice.send_text(room, "!call record stop")
    summary = await r.alice.wait_for_message(
        room, bot_id, after=stop, contains="Recording stopped", timeout=60
    )
    print(f"[encrypted-call] {summary.body!r}")
    files = await bot_files(r.alice, room, bot_id, stop, 4)
    print(f"[encrypted-call] files: {sorted(files)}")
    alice_label = next(k for k in files if k.startswith("Alice Example (ALICEEC)"))
    samples, rate = await decrypted_audio(r.alice_ec, files[alice_label])
    gap = longest_gap_s(samples, rate)
    span = loud_span(samples)
    print(
        f"[encrypted-call] alice's file: {len(span) / rate:.1f} s of tone, longest gap "
        f"{gap:.2f} s, {dominant_hz(span[-rate:], rate):.1f} Hz"
    )
    assert gap <= 2.0, gap
    assert abs(dominant_hz(span[-rate:], rate) - TONES["alice"]) < 10
    carol_label = next(k for k in files if k.startswith(f"Carol Example ({carol.device_id})"))
    heard, rate = await decrypted_audio(r.alice_ec, files[carol_label])
    assert abs(dominant_hz(loud_span(heard)[-rate:], rate) - TONES["carol"]) < 10
