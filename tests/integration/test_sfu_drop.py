"""The SFU goes away under a recording: the stop, the files and the room's messages still come.

Its own stack, since the test freezes that stack's LiveKit server (SIGSTOP: no FIN, no RST, the
connections just go silent, as with a hung SFU or a cut network) and never lets it go on. This
is the case where the LiveKit SDK logs `ping timeout` and `resuming connection` and where an
unbounded `AudioStream.aclose()` or `Room.disconnect()` waits for ever (media/stream_close.py).
The bot must notice the loss, keep what it recorded, and on `!call record stop` post the
summary and every file while the SDK's resume attempts still time out.
"""

from __future__ import annotations

import io
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rtcbot.rtc.identity import livekit_room_alias
from rtcbot_stack.stack import Stack, StackSettings
from tests.browser.test_bot_in_element_call import download
from tests.stack.eventually import eventually
from tests.stack.isolation import require_isolation
from tests.stack.matrix_user import MatrixUser, body, files_after
from tests.stack.peers import Peer, dominant_frequency, mint_token, rms

pytestmark = pytest.mark.stack
TONES = {"alice": 440.0, "bob": 660.0}


async def test_a_frozen_sfu_under_a_recording_still_gives_the_stop_the_files_and_the_messages(
    tmp_path: Path,
) -> None:
    stack = Stack(
        StackSettings(state_dir=tmp_path, netns=require_isolation(), demo_room=False)
    ).start()
    livekit = stack.livekit.child
    assert livekit is not None
    peers: list[Peer] = []
    users: list[MatrixUser] = []
    frozen = False
    try:
        bot = str(stack.bot["user_id"])
        for name in TONES:
            stack.synapse.register(name, "pw")
            login = stack.synapse.login(name, "pw", f"{name.upper()}DEV")
            users.append(
                MatrixUser(
                    stack.synapse.url, login["user_id"], login["access_token"], login["device_id"]
                )
            )
        alice, bob = users
        await alice.set_displayname("Alice Drop")
        await bob.set_displayname("Bob Drop")
        room = await alice.create_room(invite=[bot, bob.user_id])
        await bob.join(room)
        await alice.wait_for_member(room, bot)
        key, secret = stack.secrets["livekit_api_key"], stack.secrets["livekit_api_secret"]
        for user, hz in zip(users, TONES.values(), strict=True):
            peer = Peer(f"{user.user_id}:{user.device_id}")
            token = mint_token(key, secret, livekit_room_alias(room), peer.identity)
            await peer.connect(stack.livekit.url, token)
            await peer.publish_tone(hz)
            peers.append(peer)
        await alice.start_call(room, bot)
        reply = await alice.command(room, "!call record start", bot, timeout=30)
        assert body(reply).startswith("🔴 Recording started"), body(reply)

        async def both_recorded() -> bool:
            status = body(await alice.command(room, "!call record status", bot))
            return "Alice Drop" in status and "Bob Drop" in status

        await eventually(both_recorded, timeout=30, what="both in the recording", interval=0.5)
        log = stack.maubot.child.log_path
        offset = log.stat().st_size
        os.kill(livekit.pid, signal.SIGSTOP)
        frozen = True
        print(f"[sfu-drop] LiveKit (pid {livekit.pid}) frozen under the recording")
        # The SDK's ping timeout, then its resume attempts, which time out one after another
        # against a frozen server (minutes before it gives up): the stop comes meanwhile.
        await eventually(
            lambda: b"connection to the SFU was interrupted" in log.read_bytes()[offset:],
            timeout=90,
            what="the bot noticing the frozen SFU",
        )
        stop = await alice.send_text(room, "!call record stop")
        summary = await alice.wait_for(
            room, lambda e: body(e).startswith("⏹️ Recording stopped"), 90, after=stop
        )
        print(f"[sfu-drop] the room: {body(summary)}")
        assert "Alice Drop" in body(summary) and "Bob Drop" in body(summary), body(summary)
        # Nothing claimed that did not happen: the summary says when the media stopped.
        assert re.search(
            r"⚠️ The connection to the call's media server broke off; I noticed \d+ s into "
            r"the recording, and the files are silent from shortly before that on\.",
            body(summary),
        ), body(summary)
        files = await files_after(alice, room, bot, stop, 3, timeout=60)
        print(f"[sfu-drop] files: {sorted(files)}")
        heard: dict[str, float] = {}
        for label, evt in files.items():
            data = await download(alice, evt["content"]["url"])
            samples, rate = sf.read(io.BytesIO(data), dtype="int16")
            assert len(samples) > 3 * rate, (label, len(samples))
            heard[label] = dominant_frequency(np.asarray(samples[:rate]), rate)
            # The file runs to the stop, silent after the freeze.
            assert rms(np.asarray(samples[-rate:])) < 50, (label, "not silent at the end")
        print(f"[sfu-drop] dominant tone of each file's first second: {heard}")
        for who, hz in (("Alice Drop", TONES["alice"]), ("Bob Drop", TONES["bob"])):
            mine = [f for label, f in heard.items() if who in label]
            assert mine and abs(mine[0] - hz) < 5, (who, heard)
        # The bot still answers: nothing in it waits on the frozen server.
        status = await alice.command(room, "!call record status", bot, timeout=30)
        assert body(status) == "Not recording in this room.", body(status)
    finally:
        if frozen:
            os.kill(livekit.pid, signal.SIGKILL)  # never resumed: nothing may depend on it
        for peer in peers:
            await peer.close()
        for user in users:
            await user.close()
        stack.stop()
