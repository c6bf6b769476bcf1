"""Services and SFUs that room members advertise are not trusted (security review H2, M1, M2).

- A member's membership names a `livekit_service_url` of their own (a logger here, on loopback
  in this test process) and one aimed at maubot's own management API (an SSRF probe): while a
  moderator records the call, neither gets a single request (today the logger would receive a
  fresh OpenID token of the bot), nothing those servers could say reaches the room, and the
  summary says whose audio is missing and why, in a fixed sentence.
- On another SFU that the bot is configured to trust (the `second_transport`), only people whose
  membership publishes there are recorded: a participant there that claims to be alice (whose
  membership publishes on the bot's own SFU) is left out of every file (its tone is in none).
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from aiohttp import web

from rtcbot.rtc.identity import livekit_room_alias
from rtcbot_stack.stack import Stack, free_port
from tests.browser.second_sfu import SecondTransport, second_transport  # noqa: F401
from tests.browser.test_bot_in_element_call import download
from tests.browser.test_bot_records_multi_sfu import band_energy
from tests.conftest import PeerFactory, UserFactory
from tests.stack.eventually import eventually
from tests.stack.matrix_user import (
    CALL_MEMBER,
    MatrixUser,
    body,
    call_member_content,
    files_after,
    is_message_from,
    is_reply_to,
)
from tests.stack.peers import Peer, mint_token

pytestmark = pytest.mark.stack
FORGED = 940  # Hz, the tone of the participant another SFU makes up


class RequestLogger:
    """An HTTP server that answers 404 to everything and notes each request (method, path,
    the JSON keys of its body: never the body itself, which would hold the bot's token)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[tuple[str, str, list[str]]] = []

    async def _any(self, request: web.Request) -> web.Response:
        try:
            keys = sorted(await request.json())
        except Exception:
            keys = []
        self.requests.append((request.method, request.path, keys))
        return web.json_response(
            {"errcode": "M_NOT_FOUND", "error": "LOGGER-SAYS-HELLO"}, status=404
        )

    @asynccontextmanager
    async def running(self) -> AsyncIterator[RequestLogger]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._any)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        try:
            yield self
        finally:
            await runner.cleanup()


def publishing_on(user: MatrixUser, device: str, service_url: str) -> dict[str, Any]:
    """A multi-SFU membership (Element Call's compatibility mode) of `device` that publishes
    on `service_url`."""
    return {
        **call_member_content(user),
        "device_id": device,
        "membershipID": f"{user.user_id}:{device}",
        "foci_preferred": [{"type": "livekit", "livekit_service_url": service_url}],
    }


async def join_call(
    user: MatrixUser, device: str, service_url: str, alice: MatrixUser, room: str, bot_id: str
) -> None:
    """`user`'s `device` joins the call publishing on `service_url`; returns once the bot has
    said so (else its notice could be taken for the answer to a command sent next)."""
    key = f"_{user.user_id}_{device}_m.call"
    sent = await user.put_state(room, CALL_MEMBER, key, publishing_on(user, device, service_url))
    await alice.wait_for(
        room,
        lambda e: is_message_from(e, bot_id) and "joined" in body(e),
        20,
        after=str(sent["event_id"]),
    )


async def record_and_stop(
    alice: MatrixUser, room: str, bot_id: str, ready: Any, timeout: float = 45
) -> tuple[str, dict[str, Any], list[str]]:
    """`!call record start`, wait until `ready(bot's messages since)` says so, then stop.
    Returns the stop command's event, the summary and every text of the bot since the start."""
    start = await alice.send_text(room, "!call record start")
    # The answer to the command (a notice about a missing person may come first).
    reply = await alice.wait_for(room, is_reply_to(bot_id, start), 30, after=start)
    assert body(reply).startswith("🔴 Recording started"), body(reply)
    await eventually(ready, timeout=timeout, what="the recording getting ready", interval=0.5)
    stopped = await alice.send_text(room, "!call record stop")
    summary = await alice.wait_for(
        room, lambda e: body(e).startswith("⏹️ Recording stopped"), 60, after=stopped
    )
    events = await alice.messages(room, 60)
    ids = [e.get("event_id") for e in events]
    texts = [
        body(e) + str(e["content"].get("formatted_body", ""))
        for e in events[ids.index(start) + 1 :]
        if is_message_from(e, bot_id)
    ]
    return stopped, summary, texts


async def test_member_advertised_services_get_no_request_and_the_summary_says_who_is_missing(
    stack: Stack,
    alice: MatrixUser,
    make_user: UserFactory,
    make_peer: PeerFactory,
    bot_id: str,
    bot_room: str,
) -> None:
    eve = await make_user("eve")
    await eve.set_displayname("Eve *Logger*")
    await alice.invite(bot_room, eve.user_id)
    await eve.join(bot_room)
    tone = await make_peer(livekit_room_alias(bot_room), f"{alice.user_id}:{alice.device_id}")
    await tone.publish_tone(440)
    await alice.start_call(bot_room, bot_id)
    async with RequestLogger().running() as logger:
        probe = f"{stack.maubot.url}/_matrix/maubot/v1/plugins#"
        await join_call(eve, "E1", f"{logger.url}/svc", alice, bot_room, bot_id)
        await eve.put_state(
            bot_room, CALL_MEMBER, f"_{eve.user_id}_E2_m.call", publishing_on(eve, "E2", probe)
        )

        async def told() -> bool:  # the live notice: the recorder has looked at those SFUs
            events = await alice.messages(bot_room, 20)
            return any(is_message_from(e, bot_id) and "another server" in body(e) for e in events)

        _, summary, texts = await record_and_stop(alice, bot_room, bot_id, told)
        print(f"[foreign-sfus] summary {body(summary)!r}; logger saw {logger.requests}")
        assert logger.requests == [], "a member-advertised service got a request from the bot"
    # Nothing of those servers in the room: no address, no path, no answer of theirs.
    for text in texts:
        for leaked in (str(logger.port), "127.0.0.1", "maubot", "plugins", "sfu/get", "LOGGER"):
            assert leaked not in text, (leaked, text)
    # The summary names eve (as typed, not as markup) and says why her audio is missing.
    assert "Eve *Logger*" in body(summary), body(summary)
    assert "<em>" not in summary["content"].get("formatted_body", ""), summary["content"]
    assert re.search(r"Eve \*Logger\*.*not one I am configured to trust", body(summary)), body(
        summary
    )


async def test_on_another_sfu_only_those_who_publish_there_are_recorded(
    stack: Stack,
    alice: MatrixUser,
    make_user: UserFactory,
    make_peer: PeerFactory,
    bot_id: str,
    bot_room: str,
    second_transport: SecondTransport,  # noqa: F811
) -> None:
    second = second_transport
    bob = await make_user("bob")
    await bob.set_displayname("Bob Example")
    await alice.set_displayname("Alice Example")
    await alice.invite(bot_room, bob.user_id)
    await bob.join(bot_room)
    alice_identity = f"{alice.user_id}:{alice.device_id}"
    lk_room = livekit_room_alias(bot_room)
    home = await make_peer(lk_room, alice_identity)  # alice on the bot's own SFU: 550 Hz
    await home.publish_tone(550)
    peers: list[Peer] = []
    try:
        # On the second SFU: bob (660 Hz), whose membership publishes there, and a forger
        # that the second SFU's operator lets in as alice (940 Hz: far from the mix's
        # intermodulation products of 550 and 660 Hz, such as 2·550 − 660 = 440).
        for identity, hz in ((f"{bob.user_id}:{bob.device_id}", 660), (alice_identity, FORGED)):
            peer = Peer(identity)
            token = mint_token(second.api_key, second.api_secret, lk_room, identity)
            await peer.connect(second.livekit_url, token)
            await peer.publish_tone(hz)
            peers.append(peer)
        await alice.start_call(bot_room, bot_id)
        await join_call(bob, bob.device_id, second.service_url, alice, bot_room, bot_id)

        async def hears_bob() -> bool:
            reply = await alice.command(bot_room, "!call record status", bot_id, timeout=30)
            return "Bob Example" in body(reply)

        stopped, summary, _ = await record_and_stop(alice, bot_room, bot_id, hears_bob)
    finally:
        for peer in peers:
            await peer.close()
    print(f"[foreign-sfus] summary {body(summary)!r}")
    assert "Alice Example" in body(summary) and "Bob Example" in body(summary), body(summary)
    files = await files_after(alice, bot_room, bot_id, stopped, 3)
    print(f"[foreign-sfus] files {sorted(files)}")
    # Every file (alice's, bob's, the mix) lacks the forger's tone; alice's has her 550 Hz.
    for label, evt in files.items():
        data = await download(alice, evt["content"]["url"])
        samples, rate = sf.read(io.BytesIO(data), dtype="int16")
        tail = np.asarray(samples[-2 * rate :])
        forged, e550, e660 = (band_energy(tail, rate, hz) for hz in (FORGED, 550, 660))
        print(f"[foreign-sfus] {label}: {FORGED} {forged:.0f}, 550 {e550:.0f}, 660 {e660:.0f}")
        assert forged * 10 < max(e550, e660), (label, forged, e550, e660)
        if label.startswith("Alice Example"):
            assert e550 > 10 * e660, (label, e550, e660)
