"""Element Call media keys reaching the bot on the real stack (Synapse, maubot with its
OlmMachine, a js-sdk client with Rust crypto): what the to-device handler refuses and what it
keeps (matrix/to_device.py, e2ee/call_keys.py).

- a plaintext `io.element.call.encryption_keys` (anyone can send one): dropped;
- an Olm-encrypted one whose `claimed_device_id` is not the sending device: dropped;
- an Olm-encrypted one with bad content (an index outside the key ring): dropped, counted
  `invalid`;
- a good one: accepted and held for the room's call (the sender is in no call the bot is in).

Never is the key itself in the bot's log.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import aiohttp
import pytest
from mautrix.api import Method, Path

from rtcbot_stack.stack import Stack
from tests.crypto_client import fixtures
from tests.crypto_client.client import CryptoClient
from tests.crypto_client.fixtures import CryptoUserFactory
from tests.stack.eventually import eventually
from tests.stack.matrix_user import MatrixUser

pytestmark = pytest.mark.stack
crypto_driver = fixtures.crypto_driver
make_crypto_user = fixtures.make_crypto_user

KEY_TYPE = "io.element.call.encryption_keys"


def key_content(room: str, device: str, user: str, index: int, key: str) -> dict[str, Any]:
    return {
        "keys": {"index": index, "key": key},
        "room_id": room,
        "member": {"claimed_device_id": device, "id": f"{user}:{device}"},
        "session": {"call_id": "", "application": "m.call", "scope": "m.room"},
        "sent_ts": int(time.time() * 1000),
    }


def log_size(stack: Stack) -> int:
    return len(stack.maubot.child.log_path.read_text(errors="replace"))


def log_since(stack: Stack, offset: int) -> str:
    return stack.maubot.child.log_path.read_text(errors="replace")[offset:]


async def wait_log(stack: Stack, pattern: str, offset: int, timeout: float = 30) -> str:
    return await eventually(
        lambda: text if re.search(pattern, text := log_since(stack, offset)) else None,
        timeout=timeout,
        what=f"{pattern!r} in the maubot log",
        interval=0.2,
    )


async def received(stack: Stack) -> dict[str, float]:
    """rtcbot_media_keys_received_total by outcome."""
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{stack.auth_service_url}/metrics") as r,
    ):
        text = await r.text()
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'rtcbot_media_keys_received_total\{outcome="(\w+)"\} (\S+)', text)
    }


async def encrypted_room(eve: CryptoClient, bot_id: str) -> str:
    room = await eve.create_encrypted_room([bot_id])
    await eve.wait_for_joined(room, bot_id)
    return room


async def test_media_keys_the_bot_refuses_and_keeps(
    stack: Stack, bot_id: str, make_crypto_user: CryptoUserFactory
) -> None:
    eve = await make_crypto_user("eve")
    room = await encrypted_room(eve, bot_id)
    bot_device = str(stack.bot["device_id"])
    before = await received(stack)
    who = re.escape(f"{eve.user_id}")

    # (1) Plaintext: anyone can send one; it proves nothing about its sender.
    plain_key = "cGxhaW50ZXh0IGtleSAxMg=="
    offset = log_size(stack)
    plain = MatrixUser(stack.synapse.url, eve.user_id, eve.access_token, eve.device_id)
    try:
        await plain.request(
            Method.PUT,
            Path.v3.sendToDevice[KEY_TYPE][uuid.uuid4().hex],
            {
                "messages": {
                    bot_id: {
                        bot_device: key_content(room, eve.device_id, eve.user_id, 0, plain_key)
                    }
                }
            },
        )
    finally:
        await plain.close()
    await wait_log(stack, rf"dropped a plaintext to-device {KEY_TYPE} from {who}", offset)

    # (2) Olm-encrypted by eve's device, claiming to come from another of her devices.
    forged_key = "Zm9yZ2VkIGRldmljZSBrZXk="
    offset = log_size(stack)
    await eve.send_to_device(
        bot_id, bot_device, KEY_TYPE, key_content(room, "OTHERDEV", eve.user_id, 0, forged_key)
    )
    await wait_log(
        stack, rf"it claims device OTHERDEV but came from {re.escape(eve.device_id)}", offset
    )

    # (3) Authenticated, but an index the key ring does not have.
    bad_key = "b3V0c2lkZSB0aGUgcmluZyE="
    offset = log_size(stack)
    await eve.send_to_device(
        bot_id, bot_device, KEY_TYPE, key_content(room, eve.device_id, eve.user_id, 300, bad_key)
    )
    await wait_log(stack, r"dropped a media key from .*keys\.index 300 is outside 0–255", offset)

    # (4) A good one: kept for the room's call (eve is in no call the bot is in: held).
    good_key = "Z29vZCBrZXkgZm9yIHJvb20="
    offset = log_size(stack)
    await eve.send_to_device(
        bot_id, bot_device, KEY_TYPE, key_content(room, eve.device_id, eve.user_id, 3, good_key)
    )
    log = await wait_log(
        stack,
        rf"media key index 3 from {who}/{re.escape(eve.device_id)} for {re.escape(room)} "
        r"\(held: not in the bot's call there\)",
        offset,
    )
    print(f"\nthe bot's log for the good key: {log.strip().splitlines()[-1][:200]}")

    after = await received(stack)
    assert after.get("accepted", 0) - before.get("accepted", 0) == 1, (before, after)
    assert after.get("invalid", 0) - before.get("invalid", 0) == 1, (before, after)
    whole = stack.maubot.child.log_path.read_text(errors="replace")
    for key in (plain_key, forged_key, bad_key, good_key):
        assert key not in whole, "a media key in the bot's log"
    # Only the good one got past the handler: nothing from the refused ones reached it.
    assert len(re.findall(rf"media key index \d+ from {who}", whole)) == 1
