"""The bot's end-to-end encryption stays on across the restarts an operator does (issue 19):
a second start of the stack on the same state (`make run` again), `make run`'s supervisor
restarting maubot after a `kill -9`, the instance stopped and started through maubot's API,
and a plugin reload; and when maubot replaces the bot's client under a running instance (a new
access token), the bot says nothing in the encrypted room rather than plaintext, /health says
why, and the stack's client update restarts the instance so E2EE is back.

Each step checks what a client with real E2EE (matrix-js-sdk, tests/crypto_client) sees: the
bot's answer is `m.room.encrypted` and decrypts, and not one of its messages there is plaintext.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from rtcbot_stack import http
from rtcbot_stack.build import build_mbp
from rtcbot_stack.maubot_client import put_bot_client
from rtcbot_stack.stack import INSTANCE_ID, Stack
from tests.crypto_client import fixtures
from tests.crypto_client.client import CryptoClient, Driver
from tests.crypto_client.fixtures import CryptoUserFactory
from tests.integration.test_encrypted_room import encrypted_room_with_bot, wait_for_log
from tests.stack.instance import stop_instance
from tests.stack.restarts import crypto_login, kill_9_under_supervisor, make_run_settings

pytestmark = pytest.mark.stack
crypto_driver = fixtures.crypto_driver
make_crypto_user = fixtures.make_crypto_user

# Message events (what the guard covers); the bot's state events are never encrypted.
MESSAGE_TYPES = {"m.room.message", "m.reaction", "org.matrix.msc4075.rtc.notification"}


async def answered_encrypted(user: CryptoClient, room: str, bot_id: str, command: str) -> str:
    """Send `command`; the bot's reply must be m.room.encrypted and decrypt. Returns its text."""
    sent = await user.send_text(room, command)
    reply = await user.wait_for_message(room, bot_id, reply_to=sent, timeout=60)
    assert reply.wire_type == "m.room.encrypted", (command, reply)
    assert reply.decryption_failure is None, (command, reply)
    return reply.body


async def no_plaintext_from(user: CryptoClient, room: str, bot_id: str) -> int:
    """Every message event of the bot in `room` is encrypted; returns how many there are."""
    mine = [
        m
        for m in await user.messages(room)
        if m.sender == bot_id and (m.type in MESSAGE_TYPES or m.wire_type in MESSAGE_TYPES)
    ]
    plain = [(m.wire_type, m.body) for m in mine if m.wire_type != "m.room.encrypted"]
    assert not plain, plain
    return len(mine)


def health(stack: Stack) -> tuple[int, dict[str, object]]:
    try:
        return 200, dict(http.request("GET", f"{stack.auth_service_url}/health"))
    except http.HttpError as e:
        return e.status, e.json()


# -- the session stack: instance stop/start, plugin reload, a client swapped under the bot -----
async def test_e2ee_survives_instance_restart_reload_and_a_swapped_client(
    stack: Stack, bot_id: str, make_crypto_user: CryptoUserFactory
) -> None:
    eve = await make_crypto_user("eve")
    room = await encrypted_room_with_bot(eve, bot_id)
    assert (await answered_encrypted(eve, room, bot_id, "!call version")).startswith("rtcbot ")

    # The instance stopped and started through maubot's management API.
    await stop_instance(stack)
    stack.maubot.api("PUT", f"/instance/{INSTANCE_ID}", {"started": True})
    assert "rtcbot commands" in await answered_encrypted(eve, room, bot_id, "!call help")

    # A plugin reload (the same plugin uploaded again: maubot restarts its instances).
    stack.maubot.upload_plugin(build_mbp(stack.settings.state_dir / "build"))
    assert (await answered_encrypted(eve, room, bot_id, "!call version")).startswith("rtcbot ")

    # maubot's client gets a new access token (an operator logs the bot in again in the admin
    # panel): maubot swaps the Matrix client under the running instance, which keeps the old
    # one without crypto. A real fault of maubot, not a mock. The bot must not answer in
    # plaintext: it says nothing there, logs why, and /health tells.
    login = stack.synapse.login(
        "rtcbot", stack.secrets["bot_password"], str(stack.bot["device_id"])
    )
    log_start = len(stack.maubot.child.log_path.read_text(errors="replace"))
    stack.maubot.put_client(bot_id, login["access_token"], str(stack.bot["device_id"]))
    status, said = health(stack)
    assert status == 503 and said["e2ee"] == {
        "available": False,
        "reason": "maubot replaced the bot's Matrix client while this instance ran (its "
        "access token, homeserver or device changed) and the instance kept the old one, which "
        "has no crypto: restart the instance",
    }, said
    print(f"\n/health with the swapped client: {status} {said['e2ee']}")
    await eve.send_text(room, "!call version")
    await asyncio.to_thread(
        wait_for_log, stack, rf"E2EE unavailable: saying nothing in {re.escape(room)}", log_start
    )
    # The stack's own client update (what `make run` does) restarts the instance: E2EE back.
    assert put_bot_client(stack.maubot, INSTANCE_ID, stack.bot, stack.synapse.url)
    assert (await answered_encrypted(eve, room, bot_id, "!call version")).startswith("rtcbot ")
    assert health(stack)[1]["e2ee"] == {"available": True}
    assert await no_plaintext_from(eve, room, bot_id) >= 4


# -- a second stack on one state directory: `make run` twice, then kill -9 ---------------------
async def test_e2ee_survives_a_second_start_and_a_killed_maubot(tmp_path: Path) -> None:
    """Its own stack on fixed ports, as `make run` (the state dir is reused as `.stack/` is)."""
    settings = make_run_settings(tmp_path)
    driver = Driver(tmp_path / "crypto_client.log")
    await driver.start()
    first = Stack(settings).start()
    stack = first
    eve: CryptoClient | None = None
    try:
        bot_id = str(first.bot["user_id"])
        eve = await crypto_login(driver, first, "eve", "EVEJS")
        room = await encrypted_room_with_bot(eve, bot_id)
        assert "rtcbot commands" in await answered_encrypted(eve, room, bot_id, "!call help")
        first.stop()

        # The second start on the same state (before the fix: a new login, a new token, the
        # instance left with maubot's old client without crypto, plaintext answers).
        stack = Stack(settings).start()
        assert (await answered_encrypted(eve, room, bot_id, "!call version")).startswith("rtcbot ")
        assert stack.bot["access_token"] == first.bot["access_token"]  # the session was kept

        # `make run`'s supervisor restarts maubot after a kill -9.
        kill_9_under_supervisor(stack)
        assert "rtcbot commands" in await answered_encrypted(eve, room, bot_id, "!call help")
        assert await no_plaintext_from(eve, room, bot_id) >= 3
        log = stack.maubot.child.log_path.read_text(errors="replace")
        assert "Mismatching device ID in crypto store" not in log
        assert "E2EE unavailable" not in log
    finally:
        if eve is not None:
            await eve.close()
        await driver.close()
        stack.stop()
