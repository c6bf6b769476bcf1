"""E2EE of the bot in an encrypted Element Call call after the restarts an operator does
(issue 19): the instance stopped and started through maubot's management API, the plugin
reloaded, and maubot killed with SIGKILL and restarted by `make run`'s supervisor. Then the bot's answers are encrypted, its media key reaches Element Call over Olm,
and its announcement is heard there (GCM-encrypted track, no decryption error about it).

The js-sdk variants (and a second `make run`) are tests/integration/test_e2ee_restarts.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rtcbot.rtc.identity import member_identity
from rtcbot_stack.build import build_mbp
from rtcbot_stack.element_call_web import StaticServer, element_call_config
from rtcbot_stack.stack import INSTANCE_ID, Stack
from rtcbot_stack.synapse import SERVER_NAME
from tests.browser import test_encrypted_call as ec
from tests.browser.conftest import ElementCallFactory, _identity_resolver
from tests.browser.element_call import (
    Chromium,
    ElementCallPage,
    Installation,
    open_page,
    room_url,
    session_storage,
)
from tests.crypto_client import fixtures
from tests.crypto_client.client import CryptoClient
from tests.crypto_client.client import Driver as CryptoDriver
from tests.crypto_client.fixtures import CryptoUserFactory
from tests.stack.instance import stop_instance
from tests.stack.matrix_user import MatrixUser
from tests.stack.restarts import crypto_login, kill_9_under_supervisor, make_run_settings

pytestmark = pytest.mark.stack
crypto_driver = fixtures.crypto_driver
make_crypto_user = fixtures.make_crypto_user
pages = ec.pages


async def test_after_restarts_reload_and_kill_9_the_bot_is_heard_encrypted(
    stack: Stack,
    bot_id: str,
    make_crypto_user: CryptoUserFactory,
    element_call: ElementCallFactory,
    pages: dict[str, ElementCallPage],
) -> None:
    r = await ec.encrypted_room(stack, bot_id, make_crypto_user)
    await stop_instance(stack)
    stack.maubot.api("PUT", f"/instance/{INSTANCE_ID}", {"started": True})
    assert (await ec.command(r, bot_id, "!call version")).body.startswith("rtcbot ")
    stack.maubot.upload_plugin(build_mbp(stack.settings.state_dir / "build"))
    assert (await ec.command(r, bot_id, "!call version")).body.startswith("rtcbot ")
    # maubot killed with SIGKILL and started again, as `make run`'s supervisor does.
    kill_9_under_supervisor(stack)
    stack.write_json()
    assert (await ec.command(r, bot_id, "!call version")).body.startswith("rtcbot ")

    page = await ec.join_call(element_call, pages, "alice", r.alice_ec, r.room_id, "compatibility")
    await r.alice.wait_for_message(
        r.room_id, bot_id, after=r.marker, contains="started a", timeout=30
    )
    me = member_identity(bot_id, str(stack.bot["device_id"]))
    heard = asyncio.create_task(page.wait_for_audio(me, min_power=1e-3, window=0.5, timeout=90))
    reply = await ec.command(r, bot_id, "!call announce Still encrypted after a restart.")
    assert "spoken in the call" in reply.body, reply.body
    got = await heard
    tracks = await ec.track_encryption(stack, r.room_id)
    print(f"[encrypted-call after restarts] announce heard by alice: {got}; tracks {tracks}")
    assert tracks.get(me) and all(e == "GCM" for e in tracks[me]), tracks
    lines = await page.console_tail(5000)
    assert not ec.bot_decrypt_errors(lines, me)
    assert any(f"set participant sender key {me}" in x for x in lines), "no key from the bot"
    # Not one plaintext message of the bot in the room.
    plain = [
        m.body
        for m in await r.alice.messages(r.room_id)
        if m.sender == bot_id and m.wire_type == "m.room.message"
    ]
    assert not plain, plain


# -- a second start of the stack on the same state (`make run` twice) --------------------------
async def test_after_a_second_start_the_bot_is_heard_in_an_encrypted_call(
    tmp_path: Path, chromium: Chromium, element_call_install: Installation
) -> None:
    """Its own stack on fixed ports, started twice on one state directory as `make run` is
    (before the fix the bot's E2EE was off after the second start: it refused to join or
    announce, in plaintext). Element Call runs against the second start."""
    settings = make_run_settings(tmp_path)
    driver = CryptoDriver(tmp_path / "crypto_client.log")
    await driver.start()
    stack = first = Stack(settings).start()
    alice: CryptoClient | None = None
    alice_ec: MatrixUser | None = None
    server: StaticServer | None = None
    page: ElementCallPage | None = None
    try:
        bot_id = str(first.bot["user_id"])
        alice = await crypto_login(driver, first, "alice", "ALICEJS")
        room = await alice.create_encrypted_room([bot_id])
        await alice.wait_for_joined(room, bot_id)
        first.stop()

        stack = Stack(settings).start()
        r = ec.EncryptedRoom(
            room,
            alice,
            await ec.ec_device(stack, alice.user_id, "ALICEEC", "Alice Example"),
            await alice.send_text(room, "hello"),
        )
        alice_ec = r.alice_ec
        assert (await ec.command(r, bot_id, "!call version")).body.startswith("rtcbot ")
        server = StaticServer(
            element_call_install.dist, element_call_config(stack.synapse.url, SERVER_NAME)
        )
        browser = await chromium.browser_for_tone(440.0)
        storage = session_storage(
            alice_ec.user_id, alice_ec.device_id, alice_ec.access_token, "compatibility", False
        )
        page = await open_page(
            chromium.driver,
            browser,
            room_url(server.url, room),
            storage,
            alice_ec.user_id,
            _identity_resolver(stack, room),
            tmp_path,
        )
        await page.join(30)
        await alice.wait_for_message(
            room, bot_id, after=r.marker, contains="started a", timeout=30
        )
        me = member_identity(bot_id, str(stack.bot["device_id"]))
        heard = asyncio.create_task(
            page.wait_for_audio(me, min_power=1e-3, window=0.5, timeout=90)
        )
        reply = await ec.command(r, bot_id, "!call announce Encrypted after a second start.")
        assert "spoken in the call" in reply.body, reply.body
        got = await heard
        tracks = await ec.track_encryption(stack, room)
        print(f"[encrypted-call after a second start] heard by alice: {got}; tracks {tracks}")
        assert tracks.get(me) and all(e == "GCM" for e in tracks[me]), tracks
        lines = await page.console_tail(5000)
        assert not ec.bot_decrypt_errors(lines, me)
        plain = [
            m.body
            for m in await alice.messages(room)
            if m.sender == bot_id and m.wire_type == "m.room.message"
        ]
        assert not plain, plain
    finally:
        if page is not None:
            await page.close()
        if server is not None:
            server.close()
        for user in (alice, alice_ec):
            if user is not None:
                await user.close()
        await driver.close()
        stack.stop()
