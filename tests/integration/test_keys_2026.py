"""js-sdk 45's media keys on the real stack (docs/COMPATIBILITY.md).

js-sdk 45 (#5619) sends `media_key` and `member_id`, keeps `keys` and `member.id` "for
backwards compatibility", and no longer sends `session` and `sent_ts`; the day the
deprecated fields go, a bot that reads only them records silence. Here a js-sdk client (Node,
Rust crypto) sends the bot such keys by Olm, with and without the deprecated fields, and her
frame-encrypted audio must come out of the bot's recording: "Who spoke" names her and no
"could not decrypt" line appears.
"""

from __future__ import annotations

import asyncio
import base64
import re
from typing import Any

import pytest

from rtcbot.rtc.identity import livekit_room_alias
from rtcbot_stack.stack import Stack
from tests.crypto_client import fixtures
from tests.crypto_client.fixtures import CryptoUserFactory
from tests.integration.test_call_keys import KEY_TYPE
from tests.integration.test_encrypted_room import encrypted_room_with_bot, wait_for_log
from tests.integration.test_frame_keys import EncryptedPeer, peer
from tests.stack.matrix_user import CALL_MEMBER, MatrixUser, call_member_content

pytestmark = pytest.mark.stack
crypto_driver = fixtures.crypto_driver
make_crypto_user = fixtures.make_crypto_user

KEY = bytes(range(0x50, 0x60))
INDEX = 3


def js_sdk_45_key(room: str, device: str, member_id: str, deprecated: bool) -> dict[str, Any]:
    """ToDeviceKeyTransport.sendKey after #5619, field by field."""
    key = {"index": INDEX, "key": base64.b64encode(KEY).decode()}
    content: dict[str, Any] = {
        "room_id": room,
        "member_id": member_id,
        "media_key": key,
        "member": {"claimed_device_id": device},
    }
    if deprecated:
        content["keys"] = dict(key)
        content["member"]["id"] = member_id
    return content


@pytest.mark.parametrize("deprecated", [True, False], ids=["with-keys", "media-key-only"])
async def test_js_sdk_45_keys_decrypt_the_recording(
    deprecated: bool, stack: Stack, bot_id: str, make_crypto_user: CryptoUserFactory
) -> None:
    eve = await make_crypto_user("eve")
    room = await encrypted_room_with_bot(eve, bot_id)
    plain = MatrixUser(stack.synapse.url, eve.user_id, eve.access_token, eve.device_id)
    identity = f"{eve.user_id}:{eve.device_id}"  # a session member's, js-sdk's membershipID
    speaker = await peer(stack, livekit_room_alias(room), EncryptedPeer(identity, KEY, INDEX))
    key_state = f"_{eve.user_id}_{eve.device_id}_m.call"
    try:
        await speaker.publish_tone(440)
        sent = await plain.put_state(room, CALL_MEMBER, key_state, call_member_content(plain))
        await eve.wait_for_message(
            room, bot_id, after=str(sent["event_id"]), contains="started a", timeout=30
        )
        offset = len(stack.maubot.child.log_path.read_text(errors="replace"))
        content = js_sdk_45_key(room, eve.device_id, identity, deprecated)
        await eve.send_to_device(bot_id, str(stack.bot["device_id"]), KEY_TYPE, content)
        who = f"{re.escape(eve.user_id)}/{re.escape(eve.device_id)}"
        await asyncio.to_thread(
            wait_for_log,
            stack,
            rf"media key index {INDEX} from {who} for {re.escape(room)}",
            offset,
        )
        start = await eve.send_text(room, "!call record start")
        started = await eve.wait_for_message(room, bot_id, reply_to=start, timeout=45)
        assert started.body.startswith("🔴 Recording started"), started.body
        await asyncio.sleep(5)
        stop = await eve.send_text(room, "!call record stop")
        summary = await eve.wait_for_message(
            room, bot_id, after=stop, contains="Recording stopped", timeout=60
        )
        spoke = next(x for x in summary.body.splitlines() if x.startswith("Who spoke:"))
        assert "nobody" not in spoke, summary.body
        assert "could not decrypt" not in summary.body, summary.body
    finally:
        await speaker.close()
        await plain.put_state(room, CALL_MEMBER, key_state, {})
        await plain.close()
