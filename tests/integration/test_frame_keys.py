"""LiveKit frame encryption of the bot against the stack's real LiveKit server, with Python
peers set up as Element Call sets up its key provider (HKDF, ring 256, per-participant keys;
tests/browser/test_encrypted_call.py proves the bot against Element Call's browser): the bot's key
ring (media/frame_keys.py) in the recorder, the announcer and across an SFU restart.

- the recorder writes a speaker whose key it has, not one whose key is wrong (that one is
  reported, as `DECRYPTION_FAILED` and in the result's `undecrypted`), nor a track published
  unencrypted into the encrypted call (reported in the result's `unencrypted`);
- the bot's own key: set before it publishes and switched with `set_key_index`; index 255,
  then a rotation to 0 (the index wraps) while a listener keeps hearing it;
- (slow) after LiveKit restarts, the new room gets every key known before: a member who
  joins then is decrypted at once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from livekit import rtc

from rtcbot.media.announcer import Announcer
from rtcbot.media.frame_keys import FrameKeys, e2ee_options
from rtcbot.media.livekit_settings import LiveKitSettings
from rtcbot.media.participant import Participant
from rtcbot.media.recorder import Recorder
from rtcbot.media.tokens import SfuAccess, mint_local_token
from rtcbot.media.tts import chime
from rtcbot.rtc.e2ee_keys import MediaKey
from rtcbot_stack.stack import Stack
from tests.stack.eventually import eventually
from tests.stack.peers import Peer, dominant_frequency, mint_token, rms

pytestmark = pytest.mark.stack
log = logging.getLogger("rtcbot.test.frame_keys")

ALICE_KEY = bytes(range(0x10, 0x20))
MALLORY_KEY = bytes(range(0x40, 0x50))
CAROL_KEY = bytes(range(0x60, 0x70))
BOT_KEYS = {255: bytes(range(0xA0, 0xB0)), 0: bytes(range(0xC0, 0xD0))}


class EncryptedPeer(Peer):
    """A peer whose media is frame-encrypted with its own key at `index`, like Element Call."""

    def __init__(self, identity: str, key: bytes, index: int) -> None:
        super().__init__(identity)
        self.key, self.index = key, index

    async def connect(self, url: str, token: str) -> None:
        options = rtc.RoomOptions(
            auto_subscribe=True, connect_timeout=10, encryption=e2ee_options()
        )
        await self.room.connect(url, token, options)
        self.set_key(self.identity, self.key, self.index)

    def set_key(self, identity: str, key: bytes, index: int) -> None:
        provider = self.room.e2ee_manager.key_provider
        assert provider is not None
        provider.set_key(identity, key, index)

    async def publish_tone(self, freq: float) -> None:
        await super().publish_tone(freq)
        for cryptor in self.room.e2ee_manager.frame_cryptors():  # the sender's index
            if cryptor.participant_identity == self.identity:
                cryptor.set_key_index(self.index)


def livekit(stack: Stack) -> LiveKitSettings:
    return LiveKitSettings(
        url=stack.livekit.url,
        api_key=stack.secrets["livekit_api_key"],
        api_secret=stack.secrets["livekit_api_secret"],
    )


def access_for(
    stack: Stack, room: str, identity: str, role: str
) -> Callable[[], Awaitable[SfuAccess]]:
    async def get() -> SfuAccess:
        return mint_local_token(livekit(stack), room, identity, role)  # type: ignore[arg-type]

    return get


async def peer(stack: Stack, room: str, p: Peer) -> Peer:
    token = mint_token(
        stack.secrets["livekit_api_key"], stack.secrets["livekit_api_secret"], room, p.identity
    )
    await p.connect(stack.livekit.url, token)
    return p


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    await eventually(check, timeout=timeout, what=what, interval=0.1)


def state(keys: FrameKeys, identity: str) -> str | None:
    st = keys.states.get(identity)
    return st.state if st else None


async def test_the_recorder_decrypts_whom_it_has_keys_for(stack: Stack, tmp_path: Path) -> None:
    room = f"e2ee-rec-{uuid.uuid4().hex[:8]}"
    peers: list[Peer] = []
    try:
        alice = await peer(stack, room, EncryptedPeer("alice", ALICE_KEY, 5))
        mallory = await peer(stack, room, EncryptedPeer("mallory", MALLORY_KEY, 0))
        bob = await peer(stack, room, Peer("bob"))  # publishes without encryption
        peers += [alice, mallory, bob]
        for p, hz in ((alice, 440), (mallory, 660), (bob, 550)):
            await p.publish_tone(hz)

        keys = FrameKeys(log)
        keys.set_remote("alice", MediaKey(5, ALICE_KEY))
        keys.set_remote("mallory", MediaKey(0, bytes(16)))  # a wrong key
        participant = Participant(access_for(stack, room, "rtcbot-recorder", "recorder"), log)
        participant.use_frame_keys(keys)
        recorder = Recorder(participant, tmp_path, "e2ee", log=log)
        await recorder.start()
        assert participant.room is not None and keys.rooms == [participant.room]
        await until(lambda: state(keys, "alice") == "OK", 30, "alice decrypting")
        await until(lambda: state(keys, "mallory") == "DECRYPTION_FAILED", 30, "mallory failing")
        await asyncio.sleep(3)  # what the files below hold
        result = await recorder.stop()
    finally:
        for p in peers:
            await p.close()

    files = {f.path.name: f for f in result.files}
    print(f"\nfiles {sorted(files)}; undecrypted {result.undecrypted}; states {keys.states}")
    samples = {name: _read(f.path) for name, f in files.items()}
    assert dominant_frequency(samples["e2ee-alice.ogg"][-48_000:]) == pytest.approx(440, abs=5)
    # Mallory's audio never decrypted: not written (no file, or nothing in it), and reported.
    assert rms(samples.get("e2ee-mallory.ogg", np.zeros(1, np.int16))) < 50
    assert result.undecrypted.get("mallory", 0) >= 2.0, result.undecrypted
    assert "alice" not in result.undecrypted or result.undecrypted["alice"] < 2.0
    assert "bob" not in result.undecrypted
    # Bob publishes unencrypted into an encrypted call: not written either, and reported.
    assert rms(samples.get("e2ee-bob.ogg", np.zeros(1, np.int16))) < 50
    assert result.unencrypted.get("bob", 0) >= 2.0, result.unencrypted


def _read(path: Path) -> np.ndarray:
    data, _rate = sf.read(str(path), dtype="int16")
    return np.asarray(data)


async def test_the_bots_own_key_is_set_before_publishing_and_switched_255_to_0(
    stack: Stack,
) -> None:
    room = f"e2ee-say-{uuid.uuid4().hex[:8]}"
    me = "rtcbot-announcer"
    listener = await peer(stack, room, EncryptedPeer("listener", bytes(16), 0))
    assert isinstance(listener, EncryptedPeer)
    listener.set_key(me, BOT_KEYS[255], 255)
    keys = FrameKeys(log)
    keys.set_own(MediaKey(255, BOT_KEYS[255]))
    keys.use_own(255)
    participant = Participant(access_for(stack, room, me, "announcer"), log)
    participant.use_frame_keys(keys)
    announcer = Announcer(participant, None, log)
    try:
        await announcer.connect()
        await until(lambda: me in listener.room.remote_participants, 15, "the listener")
        await announcer.play(chime())
        await until(lambda: rms(listener.samples_from(me)) > 300, 15, "the chime at 255")
        heard_255 = len(listener.samples_from(me))

        # Rotation as Element Call does it: the new key out first, the sender switched later;
        # the old index then holds junk, so only index 0 can be what the listener decrypts.
        listener.set_key(me, BOT_KEYS[0], 0)
        keys.set_own(MediaKey(0, BOT_KEYS[0]))
        keys.use_own(0)
        listener.set_key(me, bytes(16), 255)
        assert participant.room is not None
        own = [
            c.key_index
            for c in participant.room.e2ee_manager.frame_cryptors()
            if c.participant_identity == me
        ]
        assert own and set(own) == {0}, own
        await announcer.play(chime())
        await until(
            lambda: rms(listener.samples_from(me)[heard_255:]) > 300, 15, "the chime at index 0"
        )
        print(f"\nthe bot's own states: {keys.own_state}; cryptor indexes {own}")
    finally:
        await announcer.close()
        await listener.close()


@pytest.mark.slow
async def test_after_an_sfu_restart_every_known_key_is_given_to_the_new_room(
    stack: Stack, tmp_path: Path
) -> None:
    room = f"e2ee-restart-{uuid.uuid4().hex[:8]}"
    keys = FrameKeys(log)
    keys.set_remote("carol", MediaKey(2, CAROL_KEY))  # known before the loss
    lost, back = asyncio.Event(), asyncio.Event()
    participant = Participant(access_for(stack, room, "rtcbot-recorder", "recorder"), log)
    participant.use_frame_keys(keys)
    participant.on_lost.add(lambda _m: lost.set())
    participant.on_reconnected.add(lambda _r: back.set())
    recorder = Recorder(participant, tmp_path, "restart", log=log)
    await recorder.start()
    first_room = participant.room
    stack.livekit.stop()
    try:
        await asyncio.wait_for(lost.wait(), 60)
    finally:
        await asyncio.to_thread(stack.livekit.start)
    await asyncio.wait_for(back.wait(), 60)
    assert participant.room is not None and participant.room is not first_room
    assert keys.rooms == [participant.room]  # the old room let go, the new one attached
    carol = await peer(stack, room, EncryptedPeer("carol", CAROL_KEY, 2))
    try:
        await carol.publish_tone(550)
        await until(lambda: state(keys, "carol") == "OK", 30, "carol decrypting")
        await asyncio.sleep(2)
        result = await recorder.stop()
    finally:
        await carol.close()
    part2 = next(f for f in result.files if f.path.name == "restart-carol-part2.ogg")
    assert dominant_frequency(_read(part2.path)[-48_000:]) == pytest.approx(550, abs=5)
