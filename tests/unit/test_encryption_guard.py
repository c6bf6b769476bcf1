"""The encryption guard (rtcbot/matrix/encryption_guard.py): what reaches the client's send in
encrypted and plain rooms, with and without crypto. The client is a stand-in with the one
method the guard wraps; the stack test (tests/integration/test_e2ee_restarts.py) does it for real."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from mautrix.types import EventID, EventType, RoomID

from rtcbot.matrix.encryption_guard import EncryptionGuard, PlaintextRefused, require_encryption

ENCRYPTED, PLAIN = RoomID("!enc:localhost"), RoomID("!plain:localhost")


class Store:
    async def is_encrypted(self, room_id: str) -> bool | None:
        return {ENCRYPTED: True, PLAIN: False}.get(RoomID(room_id))


class FakeClient:
    encryption_blacklist = {EventType.REACTION}

    def __init__(self, crypto: object | None) -> None:
        self.crypto = crypto
        self.device_id = "RTCBOT"
        self.mxid = "@bot:localhost"
        self.state_store = Store()
        self.sent: list[tuple[str, str]] = []

    async def send_message_event(
        self, room_id: RoomID, event_type: EventType, content: Any, **kw: Any
    ) -> EventID:
        self.sent.append((str(room_id), str(event_type)))
        return EventID("$sent")

    async def get_state_event(self, room_id: RoomID, event_type: EventType) -> Any:
        raise RuntimeError("unreadable")  # a room the store does not know


async def test_without_crypto_nothing_goes_into_an_encrypted_room(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = FakeClient(crypto=None)
    guard = EncryptionGuard(client, logging.getLogger("test.e2ee"))  # type: ignore[arg-type]
    guard.install()
    msg = EventType.ROOM_MESSAGE
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            with pytest.raises(PlaintextRefused):
                await client.send_message_event(ENCRYPTED, msg, {"body": "hi"})
        # A room whose encryption cannot be read counts as encrypted.
        with pytest.raises(PlaintextRefused):
            await client.send_message_event(RoomID("!unknown:localhost"), msg, {})
        with pytest.raises(PlaintextRefused):  # no plaintext upload for it either
            await require_encryption(client, ENCRYPTED)  # type: ignore[arg-type]
        assert await client.send_message_event(PLAIN, msg, {"body": "hi"}) == "$sent"
    assert client.sent == [(PLAIN, "m.room.message")]
    said = [r.getMessage() for r in caplog.records if "E2EE unavailable" in r.getMessage()]
    assert len(said) == 2, said  # once per room
    assert "no crypto" in said[0] and ENCRYPTED in said[0], said
    guard.uninstall()
    await client.send_message_event(ENCRYPTED, msg, {})  # the class's own method again
    assert client.sent[-1] == (ENCRYPTED, "m.room.message")


async def test_with_crypto_only_what_would_stay_plaintext_is_refused() -> None:
    client = FakeClient(crypto=object())
    guard = EncryptionGuard(client, logging.getLogger("test.e2ee"))  # type: ignore[arg-type]
    guard.install()
    newer = EncryptionGuard(client, logging.getLogger("test.e2ee"))  # type: ignore[arg-type]
    newer.install()  # a second instance on the same client: replaced, not stacked
    guard.uninstall()  # the older one stopping late leaves the newer one in place
    assert "send_message_event" in vars(client)
    await client.send_message_event(ENCRYPTED, EventType.ROOM_MESSAGE, {})
    with pytest.raises(PlaintextRefused):  # mautrix never encrypts reactions
        await client.send_message_event(ENCRYPTED, EventType.REACTION, {})
    with pytest.raises(PlaintextRefused):
        await client.send_message_event(ENCRYPTED, EventType.ROOM_MESSAGE, {}, True)
    await client.send_message_event(PLAIN, EventType.REACTION, {})
    assert client.sent == [(ENCRYPTED, "m.room.message"), (PLAIN, "m.reaction")]
    newer.uninstall()
    assert "send_message_event" not in vars(client)


async def test_the_wrapper_stays_while_any_guard_on_the_client_is_active() -> None:
    """Review finding 5: two instances share one maubot client; the newer one stopping first
    must not take the guard away from the older one that still runs."""
    client = FakeClient(crypto=None)
    older = EncryptionGuard(client, logging.getLogger("test.e2ee"))  # type: ignore[arg-type]
    older.install()
    newer = EncryptionGuard(client, logging.getLogger("test.e2ee"))  # type: ignore[arg-type]
    newer.install()
    newer.uninstall()  # B stops while A still runs
    with pytest.raises(PlaintextRefused):
        await client.send_message_event(ENCRYPTED, EventType.ROOM_MESSAGE, {})
    with pytest.raises(PlaintextRefused):
        await require_encryption(client, ENCRYPTED)  # type: ignore[arg-type]
    assert older.refused == 2  # the checks are the running guard's own
    newer.uninstall()  # twice is harmless
    older.uninstall()  # the last one gone: the class's own method again
    assert "send_message_event" not in vars(client)
    await client.send_message_event(ENCRYPTED, EventType.ROOM_MESSAGE, {})
    assert client.sent == [(ENCRYPTED, "m.room.message")]
