"""An MSC4143 "current" participant (what Element X's coming Rust stack sends), on the real
stack: a js-sdk client (Rust crypto) in an encrypted room sends a current-dialect member
(sticky, Megolm-encrypted, `m.call#room`, no user, no device) and an
`org.matrix.msc4143.rtc.encryption_key` by Olm; a Python LiveKit participant sits in the
slot's LiveKit room (alias from `m.call#room`) under the MSC4195 hash of (user, device,
member id), its audio frame-encrypted with that key. Wire shapes from matrix-rust-rtc's
compat/sticky_2025.rs (docs/COMPATIBILITY.md).

The bot must take the member's device from the decryption, join that other LiveKit room for
the recording, bind the key to the hashed identity and decrypt: "Who spoke" names her, no
"could not decrypt" line. A sticky leave with `member.membership: "leave"` ends her at once.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import numpy as np
import pytest

from rtcbot.rtc.identity import livekit_identity, livekit_room_alias
from rtcbot.rtc.slots import ROOM_SLOT, SLOT_TYPES, slot_content
from rtcbot_stack.stack import Stack
from tests.crypto_client import fixtures
from tests.crypto_client.fixtures import CryptoUserFactory
from tests.integration.test_encrypted_room import encrypted_room_with_bot
from tests.integration.test_frame_keys import EncryptedPeer, peer
from tests.stack.eventually import eventually
from tests.stack.matrix_user import MatrixUser

pytestmark = pytest.mark.stack
crypto_driver = fixtures.crypto_driver
make_crypto_user = fixtures.make_crypto_user

RTC_MEMBER = "org.matrix.msc4143.rtc.member"
RTC_KEY = "org.matrix.msc4143.rtc.encryption_key"
MEMBER_ID = "rust-member-1"
KEY = bytes(range(0x70, 0x90))  # 32 bytes, as matrix-rust-rtc


def current_member(sfu_url: str, membership: str = "join") -> dict[str, object]:
    content: dict[str, object] = {
        "slot_id": "m.call#room",
        "msc4354_sticky_key": MEMBER_ID,
        "member": {"id": MEMBER_ID, "membership": membership},
        "application": {"type": "m.call"},
        "transports": {
            "published": [{"type": "livekit", "url": sfu_url}],
            "can_subscribe": ["livekit"],
        },
    }
    if membership == "leave":
        content["leave_reason"] = "user_left"
    return content


async def test_a_current_dialect_participant_is_recorded_and_decrypted(
    stack: Stack, bot_id: str, make_crypto_user: CryptoUserFactory
) -> None:
    eve = await make_crypto_user("eve")
    room = await encrypted_room_with_bot(eve, bot_id)
    identity = livekit_identity(eve.user_id, eve.device_id, MEMBER_ID)
    lk_room = livekit_room_alias(room, "m.call#room")
    assert lk_room != livekit_room_alias(room)
    speaker = await peer(stack, lk_room, EncryptedPeer(identity, KEY, 0))
    plain = MatrixUser(stack.synapse.url, eve.user_id, eve.access_token, eve.device_id)
    try:
        # A current client opens the slot before it joins (matrix-rust-rtc slot.rs).
        for kind in SLOT_TYPES:
            await plain.put_state(room, kind, ROOM_SLOT, slot_content(True, encrypted=True))
        slot = await eve.send_text(room, "!call slot")
        shown = await eve.wait_for_message(room, bot_id, reply_to=slot, timeout=30)
        assert "is open" in shown.body, shown.body
        await speaker.publish_tone(440)
        joined = await eve.send_sticky(room, RTC_MEMBER, current_member(stack.livekit.url))
        notice = await eve.wait_for_message(
            room, bot_id, after=joined, contains="started a", timeout=30
        )
        assert notice.wire_type == "m.room.encrypted", notice
        key = {
            "room_id": room,
            "member_id": MEMBER_ID,
            "media_key": {"index": 0, "key": base64.b64encode(KEY).decode()},
            "format": 0,
        }
        await eve.send_to_device(bot_id, str(stack.bot["device_id"]), RTC_KEY, key)

        # The bot answers in her dialect (membership.dialect "auto": the call's oldest member
        # speaks MSC4143 current): its membership a sticky m.rtc.member in m.call#room,
        # encrypted; its key an rtc.encryption_key by Olm; its voice in her LiveKit room.
        announce = await eve.send_text(room, "!call announce hello in your dialect")

        async def bots_key() -> dict[str, Any] | None:
            for m in await eve.received_to_device():
                if m["sender"] == bot_id and m["type"] == RTC_KEY and m["encrypted"]:
                    return dict(m["content"])
            return None

        got = await eventually(bots_key, timeout=30, what="the bot's key in her dialect")
        assert set(got) == {"room_id", "member_id", "media_key", "format"}, got
        assert got["room_id"] == room and got["format"] == 0, got
        bot_member = str(got["member_id"])
        bot_identity = livekit_identity(bot_id, str(stack.bot["device_id"]), bot_member)
        bot_key = base64.b64decode(got["media_key"]["key"])
        speaker.set_key(bot_identity, bot_key, int(got["media_key"]["index"]))
        spoken = await eve.wait_for_message(room, bot_id, reply_to=announce, timeout=60)
        assert "spoken in the call" in spoken.body, spoken.body
        voiced = (np.abs(speaker.samples_from(bot_identity)) > 500).sum() / 48_000
        assert voiced > 0.5, (voiced, list(speaker.heard))
        own = [
            m
            for m in await eve.messages(room)
            if m.sender == bot_id and m.type == RTC_MEMBER and m.encrypted
        ]
        assert own, "no encrypted sticky membership of the bot"
        assert own[0].content["member"] == {"id": bot_member, "membership": "join"}, own[0]
        assert own[0].content["slot_id"] == "m.call#room", own[0].content
        assert "user_id" not in own[0].content["member"], own[0].content

        start = await eve.send_text(room, "!call record start")
        started = await eve.wait_for_message(room, bot_id, reply_to=start, timeout=45)
        assert started.body.startswith("🔴 Recording started"), started.body
        await asyncio.sleep(6)
        stop = await eve.send_text(room, "!call record stop")
        summary = await eve.wait_for_message(
            room, bot_id, after=stop, contains="Recording stopped", timeout=60
        )
        spoke = next(x for x in summary.body.splitlines() if x.startswith("Who spoke:"))
        assert "nobody" not in spoke and "eve" in spoke.lower(), summary.body
        assert "could not decrypt" not in summary.body, summary.body

        left = await eve.send_sticky(room, RTC_MEMBER, current_member(stack.livekit.url, "leave"))
        ended = await eve.wait_for_message(room, bot_id, after=left, contains="ended", timeout=30)
        assert "ended" in ended.body, ended.body
    finally:
        await speaker.close()
        await plain.close()
