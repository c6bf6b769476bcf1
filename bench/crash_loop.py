"""Crash loop: kill -9 maubot while the bot is in a call, N times; count ghosts left behind.

Each cycle: the bot is in the call (joined by command, or rejoined after the restart) → wait a
random part of one heartbeat interval (so kills land at every phase of the heartbeat) →
SIGKILL maubot → poll the bot's membership every 50 ms until the homeserver empties it (its
delayed leave fires) → at kill + delay + 2 s read the whole room state and count the bot's
memberships still there (ghosts) → restart maubot → wait until the bot is back in the call.

    python -m rtcbot_stack.netns -- .venv/bin/python -m bench.crash_loop --cycles 100

`--early-restart` restarts maubot right after the kill (as `make run`'s supervisor does),
before the old delayed leave fires, and also reports whether the bot is in the call afterwards.
`--quick` (2 cycles) runs in `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mautrix.errors import MNotFound

from bench.common import loadavg, pct
from rtcbot_stack import netns
from rtcbot_stack.stack import Stack, StackSettings
from tests.stack.delayed import bot_pending_leaves
from tests.stack.matrix_user import CALL_MEMBER, MatrixUser, call_member_content

DELAY_MS = 8000
HEARTBEAT_MS = 4000
GRACE_S = 2.0
POLL_S = 0.05


@dataclass
class Cycle:
    n: int
    phase_s: float  # kill this long after the membership was seen (random in one heartbeat)
    gone_s: float | None  # kill → membership seen empty (polled every 50 ms); None: never
    server_gone_s: float | None  # kill → origin_server_ts of the emptying event
    ghosts: int  # the bot's non-empty memberships at kill + delay + 2 s
    back_s: float | None  # restart done → the bot's membership present again
    load: str


async def membership(user: MatrixUser, room: str, key: str) -> dict[str, Any] | None:
    """The bot's membership content ({} = left), or None when the request failed."""
    try:
        return dict(await user.get_state_event(room, CALL_MEMBER, key) or {})
    except MNotFound:
        return {}
    except Exception:
        return None


async def wait_present(user: MatrixUser, room: str, key: str, timeout: float) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if await membership(user, room, key):
            return time.monotonic() - t0
        await asyncio.sleep(0.1)
    return None


async def bot_memberships(user: MatrixUser, room: str, bot: str) -> int:
    """Non-empty call memberships of the bot in the full room state (any device or slot)."""
    state = await user.get_state(room)
    return sum(
        1
        for e in state
        if e.get("type") == CALL_MEMBER
        and (e.get("sender") == bot or f"_{bot}_" in str(e.get("state_key", "")))
        and e.get("content")
    )


async def server_gone_s(user: MatrixUser, room: str, key: str, killed_wall: float) -> float | None:
    try:
        evt = await user.get_state_event_full(room, CALL_MEMBER, key)
    except Exception:
        return None
    if evt.get("content") or not isinstance(evt.get("origin_server_ts"), int):
        return None
    return float(evt["origin_server_ts"]) / 1000 - killed_wall


async def run(cycles: int, seed: int, early_restart: bool, out: Path | None) -> int:
    rng = random.Random(seed)
    load_before = loadavg()
    state = Path(tempfile.mkdtemp(prefix="rtcbot-crash-"))
    settings = StackSettings(
        state_dir=state,
        netns=netns.current(),
        demo_room=False,
        plugin_config={
            "membership": {"delayed_leave_ms": DELAY_MS, "restart_interval_ms": HEARTBEAT_MS}
        },
    )
    stack = Stack(settings).start()
    results: list[Cycle] = []
    try:
        login = stack.synapse.login("demo", stack.secrets["demo_password"], "DEMODEVICE")
        user = MatrixUser(stack.synapse.url, login["user_id"], login["access_token"], "DEMODEVICE")
        bot = stack.bot["user_id"]
        room = await user.create_room(invite=[bot])
        await user.wait_for_member(room, bot)
        key = f"_{bot}_{stack.bot['device_id']}_m.call"
        # A person in the call, so the bot has a call to join (and to rejoin after restarts).
        await user.put_state(
            room, CALL_MEMBER, f"_{user.user_id}_DEMODEVICE_m.call", call_member_content(user)
        )
        await user.command(room, "!call join", bot)
        print(
            f"crash loop: {cycles} cycles, delay {DELAY_MS} ms, heartbeat {HEARTBEAT_MS} ms, "
            f"ghost = membership left {DELAY_MS / 1000 + GRACE_S:.0f} s after kill -9"
            f"{', maubot restarted at once' if early_restart else ''}; load {load_before}",
            flush=True,
        )
        for i in range(1, cycles + 1):
            if await wait_present(user, room, key, 60) is None:
                print(f"cycle {i:3d}: the bot is not in the call; stopping", flush=True)
                break
            phase = rng.uniform(0, HEARTBEAT_MS / 1000)
            await asyncio.sleep(phase)  # a random point of the heartbeat cycle, on purpose
            killed_wall, t0 = time.time(), time.monotonic()
            stack.maubot.kill()
            if early_restart:
                stack.restart_maubot()
            deadline = t0 + DELAY_MS / 1000 + GRACE_S
            gone: float | None = None
            while time.monotonic() < deadline:
                if await membership(user, room, key) == {}:
                    gone = time.monotonic() - t0
                    break
                await asyncio.sleep(POLL_S)
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            ghosts = await bot_memberships(user, room, bot)
            if early_restart and gone is None:
                # The restarted bot kept its membership (it cancels the killed process's
                # delayed leave): not a ghost if it is heartbeated, i.e. exactly one delayed
                # leave of the bot is pending for it.
                leaves = bot_pending_leaves(stack, room, key)
                ghosts = 0 if len(leaves) == 1 else ghosts
                print(f"           kept the membership; pending delayed leaves: {len(leaves)}")
            elif gone is None:  # a ghost: how long until it goes after all (up to 60 s)?
                while time.monotonic() - t0 < 60:
                    if await membership(user, room, key) == {}:
                        gone = time.monotonic() - t0
                        break
                    await asyncio.sleep(POLL_S)
            server = await server_gone_s(user, room, key, killed_wall) if gone else None
            if not early_restart:
                stack.restart_maubot()
            restarted = time.monotonic()
            back = await wait_present(user, room, key, 30)
            if back is not None and early_restart:
                back = time.monotonic() - restarted
            cyc = Cycle(i, round(phase, 3), _r(gone), _r(server), ghosts, _r(back), loadavg())
            results.append(cyc)
            print(
                f"cycle {i:3d}: killed {phase:4.2f} s into the heartbeat; membership gone "
                f"{_fmt(gone)} after kill -9 (server {_fmt(server)}); ghosts at "
                f"+{DELAY_MS / 1000 + GRACE_S:.0f} s: {ghosts}; back in the call "
                f"{_fmt(back)} after restart; load {cyc.load}"
                f"{'  GHOST' if ghosts or (gone is None and not early_restart) else ''}"
                f"{'  NOT BACK' if back is None else ''}",
                flush=True,
            )
            if back is None and not early_restart:
                break
            if back is None:  # early restart: put the bot back for the next cycle
                await user.command(room, "!call leave", bot, timeout=30)
                await user.command(room, "!call join", bot, timeout=30)
        await user.command(room, "!call leave", bot, timeout=30)
        await user.close()
    finally:
        stack.stop()
    return report(results, cycles, seed, early_restart, load_before, out)


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def _fmt(v: float | None) -> str:
    return "never" if v is None else f"{v:5.2f} s"


def report(
    results: list[Cycle],
    cycles: int,
    seed: int,
    early_restart: bool,
    load_before: str,
    out: Path | None,
) -> int:
    goal = DELAY_MS / 1000 + GRACE_S
    gone = [c.gone_s for c in results if c.gone_s is not None]
    server = [c.server_gone_s for c in results if c.server_gone_s is not None]
    back = [c.back_s for c in results if c.back_s is not None]
    ghosts = sum(c.ghosts for c in results)
    # With an early restart the bot keeps its membership (gone_s None): only ghosts count.
    ghost_cycles = sum(
        1
        for c in results
        if c.ghosts or (c.gone_s is None and not early_restart) or (c.gone_s or 0) > goal
    )
    not_back = sum(1 for c in results if c.back_s is None)
    summary = {
        "cycles_planned": cycles,
        "cycles_done": len(results),
        "seed": seed,
        "early_restart": early_restart,
        "delay_ms": DELAY_MS,
        "heartbeat_ms": HEARTBEAT_MS,
        "ghosts_left": ghosts,
        "cycles_failing_goal": ghost_cycles,
        "not_back_in_call": not_back,
        "gone_s": _stats(gone),
        "server_gone_s": _stats(server),
        "back_s": _stats(back),
        "load_before": load_before,
        "load_after": loadavg(),
    }
    print(f"\n{json.dumps(summary, indent=1)}")
    if gone:
        print(
            f"\n{len(results)} cycles: ghosts left = {ghosts} (cycles over delay + 2 s: "
            f"{ghost_cycles}); membership gone after kill -9: p50 {pct(gone, 50):.2f} / p95 "
            f"{pct(gone, 95):.2f} / max {max(gone):.2f} s (goal ≤ {goal:.0f} s); bot not back "
            f"in the call: {not_back}; load {load_before} → {summary['load_after']}"
        )
    if out is not None:
        out.write_text(json.dumps({"summary": summary, "cycles": [asdict(c) for c in results]}))
    failed = ghosts or ghost_cycles or not_back or len(results) < cycles
    return 1 if failed else 0


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "min": min(values),
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "max": max(values),
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--cycles", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--early-restart", action="store_true")
    p.add_argument("--out", type=Path, help="write every cycle as JSON here")
    p.add_argument("--quick", action="store_true", help="2 cycles, for the test suite")
    a = p.parse_args()
    if a.quick:
        a.cycles = 2
    sys.exit(asyncio.run(run(a.cycles, a.seed, a.early_restart, a.out)))
