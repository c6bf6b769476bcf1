"""Crash loop: kill -9 maubot while the bot is in a call, N times; count ghosts left behind.

Each cycle: the bot is in the call (joined by command, or rejoined after the restart) →
SIGKILL maubot → measure until the homeserver empties the bot's membership (its delayed
leave fires) → restart maubot → wait until the bot is back in the call.
A ghost = a membership still present delay + 2 s after the kill.

    python -m rtcbot_stack.netns -- .venv/bin/python -m bench.crash_loop --cycles 20
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rtcbot_stack import netns
from rtcbot_stack.stack import Stack, StackSettings
from tests.stack.matrix_user import CALL_MEMBER, MatrixUser

DELAY_MS = 8000


async def present(user: MatrixUser, room: str, key: str) -> bool:
    try:
        return bool(await user.get_state_event(room, CALL_MEMBER, key))
    except Exception:
        return False


async def run(cycles: int) -> int:
    state = Path(tempfile.mkdtemp(prefix="rtcbot-crash-"))
    stack = Stack(StackSettings(state_dir=state, netns=netns.current(), demo_room=False)).start()
    try:
        login = stack.synapse.login("demo", stack.secrets["demo_password"], "DEMODEVICE")
        user = MatrixUser(stack.synapse.url, login["user_id"], login["access_token"], "DEMODEVICE")
        bot = stack.bot["user_id"]
        room = await user.create_room(invite=[bot])
        await user.wait_for_member(room, bot)
        key = f"_{bot}_{stack.bot['device_id']}_m.call"
        await user.command(room, "!call join", bot)
        gone_s: list[float] = []
        ghosts = 0
        for i in range(cycles):
            while not await present(user, room, key):
                await asyncio.sleep(0.1)
            await asyncio.sleep(1)  # at least one heartbeat
            t0 = time.monotonic()
            stack.maubot.kill()
            while await present(user, room, key) and time.monotonic() - t0 < 60:
                await asyncio.sleep(0.05)
            took = time.monotonic() - t0
            gone_s.append(took)
            ghost = took > DELAY_MS / 1000 + 2
            ghosts += ghost
            print(
                f"cycle {i + 1:2d}: membership gone {took:5.2f} s after kill -9"
                f"{'  GHOST' if ghost else ''}",
                flush=True,
            )
            stack.restart_maubot()
        await user.command(room, "!call leave", bot, timeout=30)
        await user.close()
        print(
            f"\n{cycles} cycles, delay {DELAY_MS} ms: ghosts left = {ghosts}; gone after "
            f"min {min(gone_s):.2f} / median {statistics.median(gone_s):.2f} / "
            f"max {max(gone_s):.2f} s"
        )
        return 1 if ghosts else 0
    finally:
        stack.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--cycles", type=int, default=20)
    sys.exit(asyncio.run(run(p.parse_args().cycles)))
