"""A homeserver whose only LiveKit transport is `url` (Synapse ≥ 1.161, MSC4512).

A second Synapse advertises `{"type": "livekit", "url": <the SFU>}` and nothing else; the bot
there has no LiveKit secret and no service URL, so its only way into the SFU is the
homeserver's `rtc/livekit/get_token`. With `msc4512_enabled` and rtcbot's application
service registration (`make appservice-registration`'s `registration()`), Synapse proxies
that request to rtcbot's own authorization service, which checks the room and mints the
token. Without the registration the endpoint is 404, and the bot and `!call diag` say so.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from rtcbot.diagnostics.report import HS_TOKENS, TRANSPORTS
from rtcbot.rtc.identity import legacy_identity, livekit_room_alias
from rtcbot_stack.appservice import new_tokens, registration
from rtcbot_stack.stack import Stack, free_port
from rtcbot_stack.synapse import Synapse, SynapseOptions
from tests.integration.test_call_media import download
from tests.integration.test_diagnostics import diag
from tests.stack.eventually import eventually
from tests.stack.matrix_user import CALL_MEMBER, MatrixUser, body
from tests.stack.peers import dominant_frequency

pytestmark = pytest.mark.stack


@dataclass
class UrlServer:
    synapse: Synapse
    bot_id: str
    bot_device: str
    user: MatrixUser


async def _url_server(stack: Stack, state: Path, name: str, appservice: bool) -> UrlServer:
    instance = f"rtcbot-{name}"
    maubot_url = stack.auth_service_url.rsplit("/", 1)[0]
    hs_token, as_token = new_tokens()
    files: tuple[str, ...] = ()
    if appservice:
        reg = registration(f"{maubot_url}/{instance}", hs_token=hs_token, as_token=as_token)
        path = state / f"{name}-appservice.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(reg))
        files = (str(path),)
    syn = Synapse(
        state / name,
        SynapseOptions(
            port=free_port(),
            shared_secret=stack.secrets["registration_shared_secret"],
            livekit_sfu_url=stack.livekit.url,
            advertise_sfu_url=True,
            appservice_files=files,
        ),
    )
    syn.start()
    syn.register(f"rtcbot_{name}", "pw")
    bot = syn.login(f"rtcbot_{name}", "pw", "URLBOT")
    stack.maubot.api(
        "PUT",
        f"/client/{bot['user_id']}",
        {
            "homeserver": syn.url,
            "access_token": bot["access_token"],
            "device_id": "URLBOT",
            "autojoin": False,
            "sync": True,
            "enabled": True,
            "displayname": "disable",
            "avatar_url": "disable",
        },
    )
    cfg = stack.plugin_config()
    # No way into the SFU but the homeserver's token endpoint.
    cfg["livekit"] = {"url": "", "api_key": "", "api_secret": "", "service_url": ""}
    cfg["auth_service"]["homeserver_urls"] = {"localhost": syn.url}
    cfg["auth_service"]["appservice_hs_token"] = hs_token
    stack.maubot.put_instance(instance, "dev.rtcbot", bot["user_id"], json.dumps(cfg))
    syn.register("alice", "pw")
    login = syn.login("alice", "pw", "ALICEDEV")
    user = MatrixUser(syn.url, login["user_id"], login["access_token"], "ALICEDEV")
    return UrlServer(syn, bot["user_id"], "URLBOT", user)


@pytest.fixture
async def url_server(
    stack: Stack, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[UrlServer]:
    name, appservice = request.param
    server = await _url_server(stack, tmp_path, name, appservice)
    try:
        yield server
    finally:
        stack.maubot.api("DELETE", f"/instance/rtcbot-{name}")
        stack.maubot.api("DELETE", f"/client/{server.bot_id}")
        await server.user.close()
        server.synapse.stop()


@pytest.mark.parametrize("url_server", [("urlonly", True)], indirect=True)
async def test_on_a_url_only_homeserver_the_bot_records_and_announces_via_its_homeserver(
    url_server: UrlServer, make_peer
) -> None:  # type: ignore[no-untyped-def]
    user, bot_id = url_server.user, url_server.bot_id
    room = await user.create_room(invite=[bot_id])
    await user.wait_for_member(room, bot_id)
    lk_room = livekit_room_alias(room)
    tone = await make_peer(lk_room, "@tone:localhost:TONE")
    await tone.publish_tone(440)
    await user.start_call(room, bot_id)

    reply = await user.command(room, "!call announce hello from the url transport", bot_id, 45)
    assert "spoken in the call" in body(reply), body(reply)
    # The token came from rtcbot's service behind Synapse's proxy, for the identity of the
    # bot's state-event membership, which is what every client matches it against.
    me = legacy_identity(bot_id, url_server.bot_device)
    await asyncio.sleep(1)
    assert (np.abs(tone.samples_from(me)) > 500).sum() > 48_000 * 0.2, list(tone.heard)
    own = await user.get_state_event(
        room, CALL_MEMBER, f"_{bot_id}_{url_server.bot_device}_m.call"
    )
    assert own["foci_preferred"][0]["url"] == url_server.synapse.opts.livekit_sfu_url, own
    assert "livekit_service_url" not in own["foci_preferred"][0], own

    started = await user.command(room, "!call record start", bot_id, timeout=45)
    assert body(started).startswith("🔴 Recording started"), body(started)
    await asyncio.sleep(4)
    stopped = await user.send_text(room, "!call record stop")
    summary = await user.wait_for(
        room, lambda e: body(e).startswith("⏹️ Recording stopped"), 60, after=stopped
    )
    assert "tone" in body(summary), body(summary)

    async def tone_file() -> dict[str, Any] | None:
        for evt in await user.messages(room, 50):
            content = evt.get("content", {})
            if evt.get("sender") == bot_id and content.get("msgtype") == "m.audio":
                if "tone" in body(evt):
                    return evt
        return None

    evt = await eventually(tone_file, timeout=30, what="the tone's file", interval=0.5)
    samples, rate = sf.read(io.BytesIO(await download(user, evt["content"]["url"])), dtype="int16")
    assert abs(dominant_frequency(samples[-rate:], rate) - 440) < 10

    report = await diag(user, room, bot_id, timeout=60)
    assert report.status(HS_TOKENS) == "ok", report.body
    assert "issued the bot a token for ws://" in report.text(HS_TOKENS), report.body


@pytest.mark.parametrize("url_server", [("urlnoas", False)], indirect=True)
async def test_url_without_a_token_endpoint_is_explained(
    url_server: UrlServer,
) -> None:
    user, bot_id = url_server.user, url_server.bot_id
    room = await user.create_room(invite=[bot_id])
    await user.wait_for_member(room, bot_id)
    await user.start_call(room, bot_id)
    reply = await user.command(room, "!call announce anyone there", bot_id, timeout=45)
    text = body(reply)
    assert "rtc/livekit/get_token" in text and "404" in text, text
    assert "msc4512" in text.lower(), text
    report = await diag(user, room, bot_id, timeout=60)
    assert report.status(HS_TOKENS) == "fail", report.body
    line = report.text(HS_TOKENS)
    assert "url advertised" in line and "answers 404" in line, line
    assert "publishers never fall back" in line and "msc4512_enabled" in line, line
    assert report.status(TRANSPORTS) == "ok", report.body
