"""The bot's own membership under stress: kill -9, graceful stop, homeservers that differ.

The crash test kills the real maubot process; the fallback tests run second and third Synapse
servers (no delayed events; a 5 s maximum delay) with their own bot clients in the same maubot.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rtcbot_stack.stack import Stack, free_port
from rtcbot_stack.synapse import Synapse, SynapseOptions
from tests.stack.delayed import bot_pending_leaves
from tests.stack.eventually import eventually
from tests.stack.matrix_user import CALL_MEMBER, MatrixUser, body

pytestmark = pytest.mark.stack

DELAY_MS = 8000  # membership.delayed_leave_ms in base-config.yaml


async def bot_membership(user: MatrixUser, room: str, bot_key: str) -> dict[str, Any]:
    try:
        return dict(await user.get_state_event(room, CALL_MEMBER, bot_key))
    except Exception:
        return {}


async def wait_membership(
    user: MatrixUser, room: str, bot_key: str, present: bool, timeout: float
) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if bool(await bot_membership(user, room, bot_key)) == present:
            return time.monotonic() - start
        await asyncio.sleep(0.1)
    raise TimeoutError(f"membership {'present' if present else 'gone'} not seen in {timeout} s")


async def test_kill_9_leaves_the_call_by_itself_and_restart_rejoins(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str
) -> None:
    bot_key = f"_{bot_id}_{stack.bot['device_id']}_m.call"
    await alice.start_call(bot_room, bot_id)
    reply = await alice.command(bot_room, "!call join", bot_id)
    assert "delayed leave" in body(reply), body(reply)
    await asyncio.sleep(1)

    killed_at = time.monotonic()
    stack.maubot.kill()  # SIGKILL: no chance to send a leave
    gone_after = await wait_membership(alice, bot_room, bot_key, False, DELAY_MS / 1000 + 10)
    assert gone_after <= DELAY_MS / 1000 + 2, f"ghost lasted {gone_after:.1f} s"
    assert time.monotonic() - killed_at >= 1  # it was the server, not a leave sent before death

    # After the restart the bot comes back into the call it meant to be in.
    stack.restart_maubot()
    await wait_membership(alice, bot_room, bot_key, True, 30)
    reply = await alice.command(bot_room, "!call leave", bot_id, timeout=30)
    assert body(reply) == "Left the call."
    assert await bot_membership(alice, bot_room, bot_key) == {}


async def test_graceful_stop_leaves_at_once(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str
) -> None:
    bot_key = f"_{bot_id}_{stack.bot['device_id']}_m.call"
    await alice.start_call(bot_room, bot_id)
    await alice.command(bot_room, "!call join", bot_id)
    assert await bot_membership(alice, bot_room, bot_key)
    stack.maubot.api("PUT", "/instance/rtcbot", {"started": False})
    try:
        # Far below the 8 s delay: the plugin sent its leave while stopping.
        await wait_membership(alice, bot_room, bot_key, False, 3)
    finally:
        stack.maubot.api("PUT", "/instance/rtcbot", {"started": True, "enabled": True})
    await wait_membership(alice, bot_room, bot_key, True, 30)  # rejoined on start
    await alice.command(bot_room, "!call leave", bot_id, timeout=30)


# -- other homeservers ----------------------------------------------------------------------
@dataclass
class AltServer:
    synapse: Synapse
    bot_id: str
    bot_device: str
    user: MatrixUser


async def _alt_server(
    stack: Stack,
    state: Path,
    name: str,
    max_delay: str | None,
    max_delayed_per_user: int | None = None,
) -> AltServer:
    syn = Synapse(
        state / name,
        SynapseOptions(
            port=free_port(),
            shared_secret=stack.secrets["registration_shared_secret"],
            max_delay=max_delay,
            max_delayed_per_user=max_delayed_per_user,
        ),
    )
    syn.start()
    bot_local = f"rtcbot_{name}"
    syn.register(bot_local, "pw")
    bot = syn.login(bot_local, "pw", "ALTBOT")
    # A second bot account in the same maubot, with its own plugin instance.
    body_ = {
        "homeserver": syn.url,
        "access_token": bot["access_token"],
        "device_id": "ALTBOT",
        "autojoin": False,
        "sync": True,
        "enabled": True,
        "displayname": "disable",
        "avatar_url": "disable",
    }
    stack.maubot.api("PUT", f"/client/{bot['user_id']}", body_)
    stack.maubot.put_instance(
        f"rtcbot-{name}", "dev.rtcbot", bot["user_id"], json.dumps(stack.plugin_config())
    )
    syn.register("alice", "pw")
    login = syn.login("alice", "pw", "ALICEDEV")
    user = MatrixUser(syn.url, login["user_id"], login["access_token"], "ALICEDEV")
    return AltServer(syn, bot["user_id"], "ALTBOT", user)


@pytest.fixture
async def alt_server(
    stack: Stack, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[AltServer]:
    name, max_delay, *cap = request.param
    alt = await _alt_server(stack, tmp_path, name, max_delay, *cap)
    try:
        yield alt
    finally:
        stack.maubot.api("DELETE", f"/instance/rtcbot-{name}")
        stack.maubot.api("DELETE", f"/client/{alt.bot_id}")
        await alt.user.close()
        alt.synapse.stop()


@pytest.mark.parametrize("alt_server", [("nodelay", None)], indirect=True)
async def test_without_delayed_events_the_membership_expires_and_status_says_so(
    alt_server: AltServer,
) -> None:
    user, bot_id = alt_server.user, alt_server.bot_id
    room = await user.create_room(invite=[bot_id])
    await user.wait_for_member(room, bot_id)
    await user.start_call(room, bot_id)
    reply = await user.command(room, "!call join", bot_id)
    assert "expiring membership" in body(reply), body(reply)

    content = await bot_membership(user, room, f"_{bot_id}_{alt_server.bot_device}_m.call")
    assert content["expires"] == 60_000  # membership.fallback_expires_ms, not 4 h

    status = await user.command(room, "!call status", bot_id)
    assert "no delayed leave" in body(status) and "expiring fallback" in body(status)
    await user.command(room, "!call leave", bot_id)


@pytest.mark.parametrize("alt_server", [("maxdelay", "5s")], indirect=True)
async def test_delay_above_the_maximum_adapts(alt_server: AltServer) -> None:
    user, bot_id = alt_server.user, alt_server.bot_id
    room = await user.create_room(invite=[bot_id])
    await user.wait_for_member(room, bot_id)
    await user.start_call(room, bot_id)
    reply = await user.command(room, "!call join", bot_id)
    assert "delayed leave of 5 s" in body(reply), body(reply)
    await user.command(room, "!call leave", bot_id)


async def test_command_sent_while_maubot_was_down_runs_exactly_once(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str
) -> None:
    """maubot drops the first /sync after a restart; the catch-up answers such commands once."""
    stack.maubot.kill()
    sent = await alice.send_text(bot_room, "!call version")
    stack.restart_maubot()

    def answers(evt: dict[str, Any]) -> bool:
        rel = evt.get("content", {}).get("m.relates_to", {})
        return evt.get("sender") == bot_id and rel.get("m.in_reply_to", {}).get("event_id") == sent

    await alice.wait_for(bot_room, answers, timeout=30, after=sent)
    await asyncio.sleep(12)  # past every catch-up pass: nothing may answer it again
    replies = [e for e in await alice.messages(bot_room, 50) if answers(e)]
    assert len(replies) == 1, [body(e) for e in replies]


async def test_quick_restart_cancels_the_stale_leave_and_stays_in_the_call(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str
) -> None:
    """maubot is back before the killed process's delayed leave fired (`make run`'s supervisor
    restarts it at once): the new process cancels that stale leave, which would otherwise
    empty the membership it heartbeats. A long delay makes "before it fired" certain."""
    cfg = stack.plugin_config()
    cfg["membership"] = {"delayed_leave_ms": 60_000}
    stack.maubot.put_instance("rtcbot", "dev.rtcbot", bot_id, json.dumps(cfg))
    bot_key = f"_{bot_id}_{stack.bot['device_id']}_m.call"
    try:
        await alice.start_call(bot_room, bot_id)
        reply = await alice.command(bot_room, "!call join", bot_id)
        assert "delayed leave of 60 s" in body(reply), body(reply)
        (stale,) = bot_pending_leaves(stack, bot_room, bot_key)

        stack.restart_maubot(kill=True)

        def one_new_leave() -> Any:
            pending = bot_pending_leaves(stack, bot_room, bot_key)
            return pending if pending != [stale] and len(pending) == 1 else None

        pending = await eventually(
            one_new_leave,
            timeout=30,
            what="one pending delayed leave, not the stale one",
            interval=0.2,
        )
        assert stale not in pending
        assert await bot_membership(alice, bot_room, bot_key)
    finally:
        stack.maubot.put_instance(
            "rtcbot", "dev.rtcbot", bot_id, json.dumps(stack.plugin_config())
        )
    reply = await alice.command(bot_room, "!call leave", bot_id, timeout=30)
    assert body(reply) == "Left the call.", body(reply)


async def test_a_frozen_bot_leaves_by_itself_and_comes_back_when_thawed(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str
) -> None:
    """SIGSTOP: the process lives but sends nothing, so the supervisor sees no crash; the
    homeserver's delayed leave ends the membership; after SIGCONT the bot finds its leave gone
    and joins again (the README's way to watch the delayed leave by hand)."""
    import os
    import signal

    bot_key = f"_{bot_id}_{stack.bot['device_id']}_m.call"
    await alice.start_call(bot_room, bot_id)
    reply = await alice.command(bot_room, "!call join", bot_id)
    assert "delayed leave" in body(reply), body(reply)
    pid = stack.maubot.child.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        await wait_membership(alice, bot_room, bot_key, False, DELAY_MS / 1000 + 20)
    finally:
        os.kill(pid, signal.SIGCONT)
    await wait_membership(alice, bot_room, bot_key, True, 30)
    reply = await alice.command(bot_room, "!call leave", bot_id, timeout=30)
    assert body(reply) == "Left the call.", body(reply)


@pytest.mark.parametrize("alt_server", [("cap1", "24h", 1)], indirect=True)
async def test_the_per_user_delayed_event_cap_gives_an_expiring_membership_at_once(
    alt_server: AltServer,
) -> None:
    """`msc4140_max_delayed_events_per_user: 1`: the bot's first call holds the one pending
    delayed leave; in a second call the homeserver answers 429 until it fires, which it never
    does while the bot restarts it. The bot joins there with an expiring membership at once
    and says why."""
    user, bot_id = alt_server.user, alt_server.bot_id
    rooms = []
    for _ in range(2):
        room = await user.create_room(invite=[bot_id])
        await user.wait_for_member(room, bot_id)
        await user.start_call(room, bot_id)
        rooms.append(room)
    first = await user.command(rooms[0], "!call join", bot_id)
    assert "delayed leave of" in body(first), body(first)
    second = await user.command(rooms[1], "!call join", bot_id, timeout=30)
    assert "expiring membership" in body(second), body(second)
    assert "limit of pending delayed events" in body(second), body(second)
    for room in rooms:
        await user.command(room, "!call leave", bot_id)
