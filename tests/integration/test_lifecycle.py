"""The plugin's lifecycle on the real stack: stopping the instance ends everything it started."""

from __future__ import annotations

import json

import aiohttp
import pytest

from rtcbot.rtc.identity import livekit_room_alias
from rtcbot_stack.stack import Stack
from tests.stack.instance import stop_instance
from tests.stack.matrix_user import CALL_MEMBER, MatrixUser, body

pytestmark = pytest.mark.stack

STATUS_TOKEN = "lifecycle-status-token"


async def plugin_status(stack: Stack) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {STATUS_TOKEN}"}
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{stack.auth_service_url}/status", headers=headers) as resp,
    ):
        assert resp.status == 200, await resp.text()
        return dict(await resp.json())


async def test_stop_leaves_no_task_of_the_plugin_running(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str, make_peer
) -> None:  # type: ignore[no-untyped-def]
    cfg = stack.plugin_config()
    cfg["web"] = {"status_token": STATUS_TOKEN}
    stack.maubot.put_instance("rtcbot", "dev.rtcbot", bot_id, json.dumps(cfg))
    try:
        idle = int(str((await plugin_status(stack))["tasks"]))
        # Everything that runs in the background at once: a recording (recorder, LiveKit
        # room, audio streams), the announcer, the membership heartbeat, schedules, catch-up.
        peer = await make_peer(livekit_room_alias(bot_room), "@tone-a:localhost:DEVA")
        await peer.publish_tone(440)
        await alice.start_call(bot_room, bot_id)
        reply = await alice.command(bot_room, "!call record start", bot_id, timeout=30)
        assert body(reply).startswith("🔴 Recording started"), body(reply)
        reply = await alice.command(bot_room, "!call announce testing", bot_id, timeout=30)
        assert "spoken in the call" in body(reply), body(reply)
        busy = int(str((await plugin_status(stack))["tasks"]))
        # The count sees the plugin's tasks (so its zero below means something).
        assert busy > idle > 0, (idle, busy)

        left, written = await stop_instance(stack)
        assert left == 0, written[-3000:]

        # What the room sees: the recording was finished and posted, the bot left the call.
        summary = await alice.wait_for(
            bot_room, lambda e: body(e).startswith("⏹️ Recording stopped"), 30
        )
        assert "shutting down" in body(summary), body(summary)
        bot_key = f"_{bot_id}_{stack.bot['device_id']}_m.call"
        assert await alice.get_state_event(bot_room, CALL_MEMBER, bot_key) == {}
    finally:
        stack.maubot.api("PUT", "/instance/rtcbot", {"enabled": True, "started": True})
        stack.maubot.put_instance(
            "rtcbot", "dev.rtcbot", bot_id, json.dumps(stack.plugin_config())
        )
    reply = await alice.command(bot_room, "!call version", bot_id, timeout=30)
    assert body(reply).startswith("rtcbot ")
