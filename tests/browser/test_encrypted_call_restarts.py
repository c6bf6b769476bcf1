"""E2EE of the bot in an encrypted Element Call call after the restarts an operator does
(issue 19): the instance stopped and started through maubot's management API, the plugin
reloaded, and maubot killed with SIGKILL and restarted by `make run`'s supervisor. Then the bot's answers are encrypted, its media key reaches Element Call over Olm,
and its announcement is heard there (GCM-encrypted track, no decryption error about it).

The js-sdk variants (and a second `make run`) are tests/integration/test_e2ee_restarts.py.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal

import pytest

from rtcbot.rtc.identity import member_identity
from rtcbot_stack.build import build_mbp
from rtcbot_stack.stack import INSTANCE_ID, Stack
from rtcbot_stack.supervisor import supervise_maubot
from tests.browser import test_encrypted_call as ec
from tests.browser.conftest import ElementCallFactory
from tests.browser.element_call import ElementCallPage
from tests.crypto_client import fixtures
from tests.crypto_client.fixtures import CryptoUserFactory
from tests.integration.test_supervisor import FAST, poll_until
from tests.stack.instance import stop_instance

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
    out = io.StringIO()
    sup = supervise_maubot(stack, out=out, policy=FAST)
    os.kill(stack.maubot.child.pid, signal.SIGKILL)
    poll_until(sup, lambda: sup.restarts == 1, 90)
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
