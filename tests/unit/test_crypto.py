"""E2EE parts that need no homeserver: the Olm to-device path into the bot's handler (a real
OlmMachine and a real python-olm sender, fed through the client's sync handling), the refusal
and diagnostics texts, encrypted uploads, recovery keys in the redaction."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import olm
import pytest
from mautrix.client import Client
from mautrix.client.state_store import MemoryStateStore
from mautrix.crypto import OlmMachine
from mautrix.crypto.attachments import decrypt_attachment
from mautrix.crypto.store import MemoryCryptoStore
from mautrix.types import DeviceID, DeviceIdentity, RoomID, TrustState, UserID

from rtcbot.diagnostics.crypto import judge_crypto
from rtcbot.diagnostics.report import FAIL, OK, WARN
from rtcbot.matrix.attachments import upload_for_room
from rtcbot.matrix.crypto_status import CryptoState, crypto_refusal, refusal_text
from rtcbot.matrix.to_device import CALL_ENCRYPTION_KEYS, EncryptedToDevice, VerifiedToDevice
from rtcbot.redaction import REDACTED, redact

BOT = UserID("@rtcbot:localhost")
ELEMENT = UserID("@eve:localhost")
ELEMENT_DEVICE = DeviceID("EVEPHONE")
ROOM = "!call:localhost"


class Sender:
    """Element's side of an Olm channel to the bot: a python-olm account and session."""

    def __init__(self, bot: OlmMachine) -> None:
        self.account = olm.Account()
        keys = self.account.identity_keys
        self.curve, self.ed = keys["curve25519"], keys["ed25519"]
        bot.account.generate_one_time_keys(1)
        otk = next(iter(bot.account.one_time_keys["curve25519"].values()))
        self.bot_curve = bot.account.identity_key
        self.bot_ed = bot.account.signing_key
        self.session = olm.OutboundSession(self.account, self.bot_curve, otk)

    def identity(self, device_id: str = ELEMENT_DEVICE) -> DeviceIdentity:
        return DeviceIdentity(
            user_id=ELEMENT,
            device_id=DeviceID(device_id),
            identity_key=self.curve,
            signing_key=self.ed,
            trust=TrustState.UNVERIFIED,
            deleted=False,
            name="Element",
        )

    def encrypted(self, event_type: str, content: dict[str, Any], claim_ed: str = "") -> Any:
        plaintext = {
            "type": event_type,
            "sender": ELEMENT,
            "recipient": BOT,
            "recipient_keys": {"ed25519": self.bot_ed},
            "keys": {"ed25519": claim_ed or self.ed},
            "content": content,
        }
        msg = self.session.encrypt(json.dumps(plaintext))
        return {
            "type": "m.room.encrypted",
            "sender": ELEMENT,
            "content": {
                "algorithm": "m.olm.v1.curve25519-aes-sha2",
                "sender_key": self.curve,
                "ciphertext": {self.bot_curve: {"type": msg.message_type, "body": msg.ciphertext}},
            },
        }


def call_keys(claimed_device: str = ELEMENT_DEVICE) -> dict[str, Any]:
    """Element Call's media key content (ToDeviceKeyTransport.sendKey)."""
    return {
        "keys": {"index": 0, "key": "c2l4dGVlbiBieXRlcyBrZXk="},
        "room_id": ROOM,
        "member": {"claimed_device_id": claimed_device, "id": f"{ELEMENT}:{claimed_device}"},
        "session": {"call_id": "", "application": "m.call", "scope": "m.room"},
        "sent_ts": 1760000000000,
    }


@pytest.fixture
async def bot() -> tuple[Client, OlmMachine, EncryptedToDevice, list[VerifiedToDevice]]:
    client = Client(BOT, DeviceID("RTCBOT"), base_url="http://127.0.0.1:9")
    client.state_store = MemoryStateStore()
    machine = OlmMachine(client, MemoryCryptoStore(BOT, "test"), client.state_store)
    await machine.load()
    client.crypto = machine
    receiver = EncryptedToDevice(client, client.log)
    got: list[VerifiedToDevice] = []

    async def subscriber(evt: VerifiedToDevice) -> None:
        got.append(evt)

    receiver.subscribe(CALL_ENCRYPTION_KEYS, subscriber)
    client.add_event_handler(CALL_ENCRYPTION_KEYS, receiver.on_call_keys)
    return client, machine, receiver, got


async def sync_to_device(client: Client, *events: dict[str, Any]) -> None:
    """What maubot's syncer does with the to_device section of a /sync response."""
    for task in client.handle_sync({"to_device": {"events": list(events)}}):
        await task
    # The OlmMachine re-dispatches the decrypted inner event as a new task: let it run.
    for _ in range(5):
        await asyncio.sleep(0)


async def test_an_olm_encrypted_media_key_reaches_the_subscriber_authenticated(bot: Any) -> None:
    client, machine, receiver, got = bot
    sender = Sender(machine)
    await machine.crypto_store.put_devices(ELEMENT, {ELEMENT_DEVICE: sender.identity()})
    await sync_to_device(client, sender.encrypted(str(CALL_ENCRYPTION_KEYS), call_keys()))
    assert len(got) == 1, (receiver.received, receiver.rejected)
    evt = got[0]
    assert (evt.type, evt.sender, evt.device_id) == (
        "io.element.call.encryption_keys",
        ELEMENT,
        ELEMENT_DEVICE,
    )
    assert evt.content["keys"] == {"index": 0, "key": "c2l4dGVlbiBieXRlcyBrZXk="}
    assert evt.content["room_id"] == ROOM


async def test_a_plaintext_to_device_key_is_dropped(bot: Any) -> None:
    client, _machine, receiver, got = bot
    plain = {"type": str(CALL_ENCRYPTION_KEYS), "sender": ELEMENT, "content": call_keys()}
    await sync_to_device(client, plain)
    assert got == [] and receiver.rejected == 1


async def test_a_key_claiming_another_device_is_dropped(bot: Any) -> None:
    client, machine, receiver, got = bot
    sender = Sender(machine)
    await machine.crypto_store.put_devices(ELEMENT, {ELEMENT_DEVICE: sender.identity()})
    await sync_to_device(
        client, sender.encrypted(str(CALL_ENCRYPTION_KEYS), call_keys(claimed_device="OTHER"))
    )
    assert got == [] and receiver.rejected == 1


async def test_a_key_whose_signing_key_does_not_match_the_device_is_dropped(bot: Any) -> None:
    client, machine, receiver, got = bot
    sender = Sender(machine)
    await machine.crypto_store.put_devices(ELEMENT, {ELEMENT_DEVICE: sender.identity()})
    forged = olm.Account().identity_keys["ed25519"]
    await sync_to_device(
        client, sender.encrypted(str(CALL_ENCRYPTION_KEYS), call_keys(), claim_ed=forged)
    )
    assert got == [] and receiver.rejected == 1


# -- refusal and diagnostics ---------------------------------------------------------------------
def test_refusal_names_the_reason_and_the_fix() -> None:
    text = refusal_text("record")
    assert "end-to-end encrypted" in text and "encryption is off" in text
    # One short sentence for whoever asked; the fix (pip, device, cross-signing) is the
    # operator's: in diag, /health and the log.
    assert len(text) < 200 and "pip" not in text and "diag" in text, text


async def test_no_refusal_with_crypto_or_in_an_unencrypted_room() -> None:
    class Store:
        def __init__(self, encrypted: bool) -> None:
            self.encrypted = encrypted

        async def is_encrypted(self, room_id: str) -> bool:
            return self.encrypted

    class FakeClient:  # only what crypto_refusal reads: no homeserver involved
        def __init__(self, crypto: object, encrypted: bool) -> None:
            self.crypto = crypto
            self.state_store = Store(encrypted)

    room = RoomID(ROOM)
    assert await crypto_refusal(FakeClient(None, True), room, "join") == refusal_text("join")  # type: ignore[arg-type]
    assert await crypto_refusal(FakeClient(None, False), room, "join") is None  # type: ignore[arg-type]
    assert await crypto_refusal(FakeClient(object(), True), room, "join") is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "encrypted", "status", "words"),
    [
        (CryptoState(False, None), True, FAIL, "E2EE unavailable"),
        (CryptoState(False, "RTCBOT"), False, WARN, "E2EE unavailable"),
        (CryptoState(True, "RTCBOT", TrustState.CROSS_SIGNED_TOFU), True, OK, "cross-signed"),
        (CryptoState(True, "RTCBOT", TrustState.CROSS_SIGNED_UNTRUSTED), None, OK, "cross-signed"),
        (CryptoState(True, "RTCBOT", TrustState.UNVERIFIED), True, WARN, "not cross-signed"),
        (CryptoState(True, "RTCBOT", None), False, WARN, "not cross-signed"),
    ],
)
def test_diag_crypto_line(
    state: CryptoState, encrypted: bool | None, status: str, words: str
) -> None:
    check = judge_crypto(state, encrypted)
    assert check.status == status and words in check.summary, check
    if status != OK:
        assert check.fix


# -- encrypted uploads ---------------------------------------------------------------------------
async def test_upload_in_an_encrypted_room_is_encrypted_and_decrypts() -> None:
    uploaded: list[bytes] = []
    upload_args: list[dict[str, Any]] = []

    class Store:
        async def is_encrypted(self, room_id: str) -> bool:
            return True

    class FakeClient:  # records what would be uploaded: the bytes are the point here
        crypto = object()
        state_store = Store()

        async def upload_media(self, data: bytes, **kw: Any) -> str:
            uploaded.append(data)
            upload_args.append(kw)
            return "mxc://localhost/abc"

    data = b"OggS" + bytes(range(256)) * 8
    where = await upload_for_room(FakeClient(), RoomID(ROOM), data, "audio/ogg", "mix.ogg")  # type: ignore[arg-type]
    assert set(where) == {"file"}
    file = where["file"]
    assert file.url == "mxc://localhost/abc" and uploaded[0] != data
    assert decrypt_attachment(uploaded[0], file.key.key, file.hashes["sha256"], file.iv) == data
    # The file name stays inside the encrypted event: the media repository never gets it (L2).
    assert "mix.ogg" not in str(upload_args) and not upload_args[0].get("filename"), upload_args


async def test_upload_in_a_plain_room_is_plain() -> None:
    class Store:
        async def is_encrypted(self, room_id: str) -> bool:
            return False

    class FakeClient:
        crypto = object()
        state_store = Store()

        async def upload_media(self, data: bytes, **kw: Any) -> str:
            return "mxc://localhost/plain"

    where = await upload_for_room(FakeClient(), RoomID(ROOM), b"x", "audio/ogg", "a.ogg")  # type: ignore[arg-type]
    assert where == {"url": "mxc://localhost/plain"}


# -- redaction ---------------------------------------------------------------------------------
def test_recovery_keys_are_redacted() -> None:
    key = "EsTF 6oF9 J88K Xn5j c7qy 2aP4 fCQr nwoh fo1R GUk4 jtrR bf3s"
    assert redact(f"key: {key}.") == f"key: {REDACTED}."
    assert redact(f"key={key.replace(' ', '')}") == f"key={REDACTED}"
    assert redact("Established connection Essentially fine") == (
        "Established connection Essentially fine"
    )
