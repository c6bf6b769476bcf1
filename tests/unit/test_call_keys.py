"""The media key exchange's decisions that need no homeserver (e2ee/call_keys.py): whether a
call gets a key ring at all, and what happens to a key message's content. The exchange itself
(Olm both ways, with Element Call) is tested on the real stack: tests/integration/
test_call_keys.py and tests/browser/test_encrypted_call.py.

The client here is a real mautrix Client with a memory state store and no crypto, which is
what maubot gives a bot without the `encryption` extra or without a device. Through the bot's
commands this case never reaches the media side (they refuse earlier, matrix/crypto_status.py), so
this is where the last guard is tested.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from mautrix.client import Client
from mautrix.client.state_store import MemoryStateStore
from mautrix.types import Membership, RoomID, UserID

from rtcbot.context import BotContext
from rtcbot.e2ee.call_keys import CallKeys
from rtcbot.matrix.to_device import VerifiedToDevice
from rtcbot.media.connect_errors import SfuConnectError
from rtcbot.metrics import Metrics

BOT = UserID("@rtcbot:localhost")
ROOM = "!call:localhost"
EVE = "@eve:localhost"


def call_keys() -> tuple[CallKeys, Client, Metrics]:
    # Never contacted: the state store answers whether the room is encrypted.
    client = Client(BOT, base_url="http://127.0.0.1:9", state_store=MemoryStateStore())
    metrics = Metrics()
    ctx = BotContext(
        client=client,
        http=None,  # type: ignore[arg-type]  # not used by CallKeys
        db=None,  # type: ignore[arg-type]
        notices=None,  # type: ignore[arg-type]
        metrics=metrics,
        log=logging.getLogger("test.call_keys"),
        settings=lambda: None,  # type: ignore[arg-type,return-value]
        tasks=None,  # type: ignore[arg-type]
    )
    return CallKeys(ctx, calls=None), client, metrics  # type: ignore[arg-type]


def counted(metrics: Metrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "rtcbot_media_keys_received_total", {"outcome": outcome}
    )
    return value or 0.0


async def test_an_unencrypted_call_gets_no_key_ring() -> None:
    keys, client, _ = call_keys()
    store = client.state_store
    assert isinstance(store, MemoryStateStore)
    store.encryption[RoomID(ROOM)] = None  # what the store keeps for a room known unencrypted
    assert await store.is_encrypted(RoomID(ROOM)) is False
    assert await keys.begin(ROOM) is None
    assert keys.sessions == {}


async def test_an_encrypted_call_without_crypto_is_refused_with_the_fix() -> None:
    keys, client, _ = call_keys()
    assert client.state_store is not None and client.crypto is None
    await client.state_store.set_encryption_info(
        RoomID(ROOM), {"algorithm": "m.megolm.v1.aes-sha2"}
    )
    with pytest.raises(SfuConnectError) as e:
        await keys.begin(ROOM)
    assert "end-to-end encrypted" in e.value.message and "encryption is off" in e.value.message
    assert "maubot[encryption]" in e.value.message  # the fix
    assert keys.sessions == {}


def key_event(content: dict[str, Any], device: str = "EVEPHONE") -> VerifiedToDevice:
    return VerifiedToDevice("io.element.call.encryption_keys", EVE, device, content)


GOOD = {
    "keys": {"index": 2, "key": "AAECAwQFBgcICQoLDA0ODw=="},
    "room_id": ROOM,
    "member": {"claimed_device_id": "EVEPHONE", "id": f"{EVE}:EVEPHONE"},
    "session": {"call_id": "", "application": "m.call", "scope": "m.room"},
    "sent_ts": 1,
}


async def test_a_key_is_stored_for_its_room_and_device_bad_content_is_counted() -> None:
    keys, client, metrics = call_keys()
    assert client.state_store is not None
    await client.state_store.set_membership(RoomID(ROOM), BOT, Membership.JOIN)
    await keys.on_keys(key_event(GOOD))
    inbound = keys.inbound[ROOM]
    assert inbound.devices() == [(EVE, "EVEPHONE")]
    assert inbound.latest((EVE, "EVEPHONE")) is not None
    assert counted(metrics, "accepted") == 1

    await keys.on_keys(key_event({**GOOD, "keys": {"index": -1, "key": "AAEC"}}))
    await keys.on_keys(key_event({**GOOD, "room_id": None}))
    # A content naming another device than the one that sent it (to_device.py refuses it
    # first; this is the second check).
    await keys.on_keys(key_event(GOOD, device="OTHER"))
    assert counted(metrics, "invalid") == 3
    assert [k.index for k in inbound.keys_of((EVE, "EVEPHONE"))] == [2]


async def test_keys_only_for_rooms_the_bot_is_in_from_senders_still_there() -> None:
    """Anyone with an Olm session can send a key naming any room: memory stays bounded."""
    keys, client, metrics = call_keys()
    store = client.state_store
    assert store is not None
    await keys.on_keys(key_event(GOOD))  # the bot is not in that room
    await store.set_membership(RoomID(ROOM), BOT, Membership.JOIN)
    await store.set_membership(RoomID(ROOM), UserID(EVE), Membership.LEAVE)
    await keys.on_keys(key_event(GOOD))  # eve left it
    assert counted(metrics, "invalid") == 2 and ROOM not in keys.inbound
    await store.set_membership(RoomID(ROOM), UserID(EVE), Membership.JOIN)
    await keys.on_keys(key_event(GOOD))
    assert counted(metrics, "accepted") == 1 and keys.inbound[ROOM].devices() == [
        (EVE, "EVEPHONE")
    ]
