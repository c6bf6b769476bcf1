"""The bot in an end-to-end encrypted room, against the real stack, with a client that has real
E2EE (matrix-js-sdk 43 + Rust crypto, tests/crypto_client): encrypted commands answered with
encrypted notices, the bot's device cross-signed by its own account, recordings uploaded as
encrypted attachments, commands sent while maubot was down answered by the catch-up after a
restart (room keys kept in maubot's crypto store), Olm to-device events reaching the bot's
handler, and a bot without crypto refusing what it cannot do in an encrypted room."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import urllib.request
from collections.abc import AsyncIterator

import numpy as np
import pytest

from rtcbot.diagnostics.report import CRYPTO
from rtcbot.rtc.identity import livekit_room_alias
from rtcbot_stack import http
from rtcbot_stack.crypto import device_cross_signed
from rtcbot_stack.stack import PLUGIN_ID, Stack
from tests.crypto_client import fixtures
from tests.crypto_client.client import CryptoClient
from tests.crypto_client.fixtures import CryptoUserFactory
from tests.integration.test_call_keys import KEY_TYPE, key_content
from tests.integration.test_diagnostics import diag
from tests.integration.test_frame_keys import EncryptedPeer, peer
from tests.stack.eventually import eventually
from tests.stack.matrix_user import CALL_MEMBER, MatrixUser, call_member_content
from tests.stack.peers import speech

pytestmark = pytest.mark.stack
# The crypto client's fixtures, used by name below.
crypto_driver = fixtures.crypto_driver
make_crypto_user = fixtures.make_crypto_user

EVE_MEDIA_KEY = bytes(range(0x30, 0x40))
ENCRYPTION = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}


async def encrypted_room_with_bot(user: CryptoClient, bot_id: str) -> str:
    room = await user.create_encrypted_room([bot_id])
    await user.wait_for_joined(room, bot_id)
    assert await user.is_encrypted(room)
    return room


def media_disposition(stack: Stack, token: str, mxc: str) -> str:
    """The Content-Disposition the homeserver's media repository serves for `mxc` (the file
    name it stores, if it was given one at upload)."""
    server_media = mxc.removeprefix("mxc://")
    req = urllib.request.Request(
        f"{stack.synapse.url}/_matrix/client/v1/media/download/{server_media}",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return str(resp.headers.get("Content-Disposition", ""))


def wait_for_log(stack: Stack, pattern: str, offset: int, timeout: float = 30) -> re.Match[str]:
    log = stack.maubot.child.log_path
    deadline = time.monotonic() + timeout
    while True:
        m = re.search(pattern, log.read_text(errors="replace")[offset:])
        if m is not None:
            return m
        assert time.monotonic() < deadline, f"no {pattern!r} in the maubot log"
        time.sleep(0.2)


async def test_encrypted_command_gets_an_encrypted_answer(
    stack: Stack, bot_id: str, make_crypto_user: CryptoUserFactory
) -> None:
    eve = await make_crypto_user("eve")
    room = await encrypted_room_with_bot(eve, bot_id)
    sent = await eve.send_text(room, "!call help")
    reply = await eve.wait_for_message(room, bot_id, reply_to=sent, timeout=30)
    # Sent as m.room.encrypted and decrypted by the Rust crypto of Element Web's SDK.
    assert reply.wire_type == "m.room.encrypted" and reply.encrypted, reply
    assert reply.decryption_failure is None, reply
    assert reply.content.get("msgtype") == "m.notice", reply
    assert "rtcbot commands" in reply.body and "!call join" in reply.body, reply.body
    print(f"\n{eve.user_id} decrypted the bot's {reply.wire_type} answer: {reply.body[:120]!r}")

    # The bot's device is cross-signed by its own account, as clients that exclude insecure
    # devices (MSC4153) require: what the homeserver publishes, and what the client concludes.
    device = str(stack.bot["device_id"])
    assert device_cross_signed(stack.synapse.url, eve.access_token, bot_id, device)
    status = await eve.device_status(bot_id, device)
    assert status is not None and status["signedByOwner"], status
    # No warning shield on the bot's answer (an unsigned device gets RED / UNSIGNED_DEVICE).
    shield = await eve.event_shield(room, reply.event_id)
    assert shield == {"colour": "NONE", "reason": None}, shield

    # !call diag says so too (its crypto line), encrypted like every answer here.
    deadline = time.monotonic() + 30
    while True:  # diag runs are a few seconds apart over all rooms: wait for a turn
        sent = await eve.send_text(room, "!call diag")
        report = await eve.wait_for_message(room, bot_id, reply_to=sent, timeout=30)
        if "try again in" not in report.body:
            break
        assert time.monotonic() < deadline, report.body
        await asyncio.sleep(0.5)
    line = await final_report_line(eve, room, bot_id, report.event_id, "End-to-end encryption")
    assert line.startswith("✅") or "✅" in line, line
    assert "cross-signed by the bot's own account" in line and "room is encrypted" in line, line


async def final_report_line(
    user: CryptoClient, room: str, bot_id: str, report_id: str, name: str, timeout: float = 30
) -> str:
    """The line `name` of the diagnostics report once every check has answered (the report
    is one message, edited in place)."""

    async def finished() -> tuple[str] | None:
        edits = [
            m
            for m in await user.messages(room)
            if m.sender == bot_id
            and m.content.get("m.relates_to", {}).get("rel_type") == "m.replace"
            and m.content.get("m.relates_to", {}).get("event_id") == report_id
        ]
        text = str(edits[-1].content.get("m.new_content", {}).get("body", "")) if edits else ""
        if text and "Checking" not in text:
            return (next((x for x in text.splitlines() if name in x), ""),)
        return None

    (line,) = await eventually(finished, timeout=timeout, what="the finished report", interval=0.5)
    return line


SAID = "Encrypted rooms keep every spoken word private"


async def test_recording_in_an_encrypted_room_is_an_encrypted_attachment(
    stack: Stack, bot_id: str, make_crypto_user: CryptoUserFactory
) -> None:
    eve = await make_crypto_user("eve")
    room = await encrypted_room_with_bot(eve, bot_id)
    # Eve is in the call (the membership Element Call writes; state events are not encrypted)
    # and her audio reaches the SFU frame-encrypted with her media key, which she sends the
    # bot by Olm, as Element Call does (unencrypted audio in an encrypted call is not recorded).
    plain = MatrixUser(stack.synapse.url, eve.user_id, eve.access_token, eve.device_id)
    identity = f"{eve.user_id}:{eve.device_id}"
    speaker = await peer(
        stack, livekit_room_alias(room), EncryptedPeer(identity, EVE_MEDIA_KEY, 0)
    )
    try:
        await speaker.publish_samples(np.zeros(0, dtype=np.int16))
        sent_state = await plain.put_state(
            room, CALL_MEMBER, f"_{eve.user_id}_{eve.device_id}_m.call", call_member_content(plain)
        )
        await eve.wait_for_message(
            room, bot_id, after=str(sent_state["event_id"]), contains="started a", timeout=30
        )
        offset = len(stack.maubot.child.log_path.read_text(errors="replace"))
        key = base64.b64encode(EVE_MEDIA_KEY).decode()
        content = key_content(room, eve.device_id, eve.user_id, 0, key)
        await eve.send_to_device(bot_id, str(stack.bot["device_id"]), KEY_TYPE, content)
        who = f"{re.escape(eve.user_id)}/{re.escape(eve.device_id)}"
        wait_for_log(stack, rf"media key index 0 from {who} for {re.escape(room)}", offset)
        sent = await eve.send_text(room, "!call record start")
        started = await eve.wait_for_message(room, bot_id, reply_to=sent, timeout=45)
        assert started.body.startswith("🔴 Recording started"), started.body
        speaker.play(speech(SAID))  # what the transcript must hold, encrypted
        await speaker.played.wait()
        await asyncio.sleep(1)
        stop = await eve.send_text(room, "!call record stop")
        mix = await eve.wait_for_message(
            room, bot_id, after=stop, contains="Mix of everyone", timeout=60
        )
        assert mix.wire_type == "m.room.encrypted" and mix.content["msgtype"] == "m.audio", mix
        # An encrypted attachment: `file` (key, iv, hashes), no plaintext `url`.
        assert "url" not in mix.content and "file" in mix.content, mix.content
        got = await eve.download_attachment(mix.content["file"])
        assert got["size"] == mix.content["info"]["size"], (got, mix.content["info"])
        # The file name is only inside the encrypted event: the media repository has none (L2).
        disposition = await asyncio.to_thread(
            media_disposition, stack, eve.access_token, mix.content["file"]["url"]
        )
        name = str(mix.content.get("filename") or mix.content["body"])
        assert name not in disposition and "filename" not in disposition, (name, disposition)
        assert base64.b64decode(got["head"]).startswith(b"OggS"), got
        # The transcript, in the summary's thread, is encrypted too: the message and its files.
        transcript = await eve.wait_for_message(
            room, bot_id, after=stop, contains="📝 Transcript (", timeout=120
        )
        assert transcript.wire_type == "m.room.encrypted", transcript
        assert transcript.content["m.relates_to"]["rel_type"] == "m.thread", transcript.content
        text = str(transcript.content["body"]).lower()
        heard = [w for w in SAID.lower().split() if w in text]
        print(f"[encrypted] transcript: {transcript.content['body']!r}")
        assert len(heard) >= len(SAID.split()) // 2, (heard, text)
        txt = await eve.wait_for_message(
            room, bot_id, after=stop, contains="-transcript.txt", timeout=60
        )
        assert txt.wire_type == "m.room.encrypted" and "url" not in txt.content, txt.content
        got = await eve.download_attachment(txt.content["file"])
        assert base64.b64decode(got["head"]).startswith(b"Transcript of the recording"), got
    finally:
        await speaker.close()
        await plain.put_state(room, CALL_MEMBER, f"_{eve.user_id}_{eve.device_id}_m.call", {})
        await plain.close()


async def test_after_a_restart_encrypted_commands_are_answered(
    stack: Stack, bot_id: str, make_crypto_user: CryptoUserFactory
) -> None:
    eve = await make_crypto_user("eve")
    room = await encrypted_room_with_bot(eve, bot_id)
    first = await eve.send_text(room, "!call version")
    await eve.wait_for_message(room, bot_id, reply_to=first, timeout=30)

    stack.maubot.kill()
    # Sent while the bot is down: maubot drops its first /sync, the catch-up reads /messages
    # and must decrypt it with the room key stored before the kill.
    while_down = await eve.send_text(room, "!call version")
    offset = len(stack.maubot.child.log_path.read_text(errors="replace"))
    stack.restart_maubot()
    caught = await eve.wait_for_message(room, bot_id, reply_to=while_down, timeout=45)
    assert caught.wire_type == "m.room.encrypted" and caught.body.startswith("rtcbot "), caught
    assert caught.decryption_failure is None

    # A new command after the restart: read live and answered encrypted (keys survived).
    after = await eve.send_text(room, "!call help")
    reply = await eve.wait_for_message(room, bot_id, reply_to=after, timeout=30)
    assert reply.wire_type == "m.room.encrypted" and "rtcbot commands" in reply.body, reply
    # The restarted bot kept its crypto: same device, no new Olm account.
    log = stack.maubot.child.log_path.read_text(errors="replace")[offset:]
    assert "Mismatching device ID in crypto store" not in log


async def test_a_room_key_sent_while_maubot_was_down_is_asked_for_again(
    stack: Stack, bot_id: str, make_crypto_user: CryptoUserFactory
) -> None:
    """maubot drops the whole first /sync after a restart, to-device room keys included. A
    command encrypted with a new Megolm session while the bot was down cannot be decrypted
    with stored keys: the catch-up asks the sender's devices for the key, and a later pass
    answers the command (Element re-shares a key it already shared with that device)."""
    eve = await make_crypto_user("eve")
    room = await encrypted_room_with_bot(eve, bot_id)
    first = await eve.send_text(room, "!call version")
    await eve.wait_for_message(room, bot_id, reply_to=first, timeout=30)

    stack.maubot.kill()
    await eve.discard_session(room)
    while_down = await eve.send_text(room, "!call version")  # new session, key to the bot
    offset = len(stack.maubot.child.log_path.read_text(errors="replace"))
    stack.restart_maubot()
    caught = await eve.wait_for_message(room, bot_id, reply_to=while_down, timeout=60)
    assert caught.body.startswith("rtcbot ") and caught.wire_type == "m.room.encrypted", caught
    log = stack.maubot.child.log_path.read_text(errors="replace")[offset:]
    assert "asking the sender's devices for it" in log


async def test_olm_to_device_event_reaches_the_bots_handler(
    stack: Stack, bot_id: str, make_crypto_user: CryptoUserFactory
) -> None:
    """The plumbing for Element Call's media keys: an Olm-encrypted
    `io.element.call.encryption_keys` from a js-sdk client is decrypted by maubot's OlmMachine
    and authenticated by the bot's handler (the key itself is never logged)."""
    eve = await make_crypto_user("eve")
    # Eve's own device cross-signed, as Element sets up its users (the bot works either way).
    assert await eve.cross_sign_self()
    room = await encrypted_room_with_bot(eve, bot_id)
    offset = len(stack.maubot.child.log_path.read_text(errors="replace"))
    key = "dGhpcyBpcyBub3QgbG9nZ2Vk"  # 16 bytes, as Element Call's keys
    content = {
        "keys": {"index": 0, "key": key},
        "room_id": room,
        "member": {"claimed_device_id": eve.device_id, "id": f"{eve.user_id}:{eve.device_id}"},
        "session": {"call_id": "", "application": "m.call", "scope": "m.room"},
        "sent_ts": int(time.time() * 1000),
    }
    await eve.send_to_device(
        bot_id, str(stack.bot["device_id"]), "io.element.call.encryption_keys", content
    )
    pattern = (
        r"Olm to-device io\.element\.call\.encryption_keys from "
        + re.escape(f"{eve.user_id}/{eve.device_id}")
        + r" \(authenticated\)"
    )
    await asyncio.to_thread(wait_for_log, stack, pattern, offset)
    assert key not in stack.maubot.child.log_path.read_text(errors="replace")[offset:]


# -- a bot without crypto ----------------------------------------------------------------------
NOCRYPTO_INSTANCE = "rtcbot-nocrypto"


@pytest.fixture
async def bot_without_crypto(stack: Stack) -> AsyncIterator[str]:
    """A second client and instance of the plugin in the same maubot, with no device: maubot
    gives it no crypto (`client.crypto is None`), as when the extra or the device is missing."""
    localpart = f"nocrypto{int(time.time() * 1000) % 100000}"
    stack.synapse.register(localpart, "pw")
    login = stack.synapse.login(localpart, "pw")
    user_id = str(login["user_id"])
    stack.maubot.put_client(user_id, login["access_token"], "")
    info = stack.maubot.api("GET", f"/client/{user_id}")
    assert not info.get("device_id") and info.get("fingerprint") is None, info
    cfg = stack.plugin_config()
    cfg["auth_service"] = {**cfg["auth_service"], "enabled": False}
    stack.maubot.put_instance(NOCRYPTO_INSTANCE, PLUGIN_ID, user_id, json.dumps(cfg))
    try:
        yield user_id
    finally:
        for path in (f"/instance/{NOCRYPTO_INSTANCE}", f"/client/{user_id}"):
            try:
                stack.maubot.api("DELETE", path)
            except http.HttpError:
                pass


async def test_without_crypto_the_bot_says_nothing_in_an_encrypted_room(
    stack: Stack, alice: MatrixUser, bot_without_crypto: str
) -> None:
    """A bot without crypto never posts plaintext into an encrypted room (issue 19): it refuses
    the commands there in silence, logs why once, and /health and `!call diag` in an
    unencrypted room say "E2EE unavailable" and why."""
    bot = bot_without_crypto
    room = await alice.create_room(invite=[bot], extra={"initial_state": [ENCRYPTION]})
    await alice.wait_for_member(room, bot, timeout=30)
    log_start = len(stack.maubot.child.log_path.read_text(errors="replace"))
    # alice's client has no crypto either, so her commands go out unencrypted: the only kind
    # of message this bot can read in an encrypted room.
    for text in ("!call record start", "!call join", "!call version"):
        await alice.send_text(room, text)
    await asyncio.to_thread(
        wait_for_log, stack, rf"E2EE unavailable: saying nothing in {re.escape(room)}", log_start
    )
    # /health of that instance: 503, and why.
    health_url = f"{stack.maubot.url}/_matrix/maubot/plugin/{NOCRYPTO_INSTANCE}/health"
    with pytest.raises(http.HttpError) as answer:
        await asyncio.to_thread(http.request, "GET", health_url)
    health = answer.value.json()
    assert answer.value.status == 503 and health["status"] == "degraded", health
    assert health["e2ee"] == {
        "available": False,
        "reason": "the bot's client has no device (log it in with a device ID)",
    }, health
    print(f"\n/health of the bot without crypto: 503 {health['e2ee']}")
    # !call diag in an unencrypted room says it too (and takes long enough that the commands
    # above were handled by then).
    plain = await alice.create_room(invite=[bot])
    await alice.wait_for_member(plain, bot, timeout=30)
    report = await diag(alice, plain, bot)
    line = report.text(CRYPTO)
    assert "E2EE unavailable" in line and "no device" in line, line
    assert "says nothing in encrypted rooms" in line, line
    # Not one message event of the bot in the encrypted room.
    sent = [e for e in await alice.messages(room, 100) if e.get("sender") == bot]
    assert not [e for e in sent if "state_key" not in e], sent
