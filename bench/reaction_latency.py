"""Reaction latency: a call.member event → the bot's notice, rtcbot vs a bare mautrix echo bot.

Both bots sit in the same room on the same Synapse in the same run. Each sample is a call
start (or end): a user writes its membership; rtcbot posts "📞 … started" (or "Call ended"),
the echo bot posts "echo <event id>". Latency = the notice's origin_server_ts minus the
membership event's origin_server_ts (both server clocks).

    python -m rtcbot_stack.netns -- .venv/bin/python -m bench.reaction_latency --samples 40

`--quick` (4 samples) runs in `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import pct
from rtcbot_stack import netns
from rtcbot_stack.paths import MAUBOT_PYTHON, ROOT
from rtcbot_stack.stack import Stack, StackSettings
from tests.stack.matrix_user import CALL_MEMBER, MatrixUser, body, call_member_content


async def run(samples: int) -> None:
    state = Path(tempfile.mkdtemp(prefix="rtcbot-latency-"))
    stack = Stack(StackSettings(state_dir=state, netns=netns.current(), demo_room=False)).start()
    echo_proc = None
    try:
        syn = stack.synapse
        syn.register("echo", "pw")
        echo = syn.login("echo", "pw", "ECHO")
        echo_proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
            [
                str(MAUBOT_PYTHON),
                "-m",
                "bench.echo_bot",
                syn.url,
                echo["user_id"],
                echo["access_token"],
            ],
            cwd=ROOT,
        )
        syn.register("driver", "pw")
        login = syn.login("driver", "pw", "DRIVER")
        user = MatrixUser(syn.url, login["user_id"], login["access_token"], "DRIVER")
        bot = stack.bot["user_id"]
        room = await user.create_room(invite=[bot, echo["user_id"]])
        await user.wait_for_member(room, bot)
        syn.api("POST", f"rooms/{room}/join", echo["access_token"], {})
        await asyncio.sleep(3)  # both bots past their first sync
        key = f"_{user.user_id}_{user.device_id}_m.call"
        ours: list[float] = []
        base: list[float] = []
        for i in range(samples):
            joining = i % 2 == 0
            resp = await user.put_state(
                room, CALL_MEMBER, key, call_member_content(user) if joining else {}
            )
            event_id = resp["event_id"]
            evt = await user.request_event(room, event_id)
            t0 = evt["origin_server_ts"]
            expect = "📞" if joining else "Call ended"
            rt = await user.wait_for(
                room,
                lambda e, x=expect: e["sender"] == bot and body(e).startswith(x),  # type: ignore[misc]
                after=event_id,
            )
            et = await user.wait_for(
                room,
                lambda e, x=f"echo {event_id}": e["sender"] == echo["user_id"] and body(e) == x,  # type: ignore[misc]
                after=event_id,
            )
            ours.append((rt["origin_server_ts"] - t0) / 1000)
            base.append((et["origin_server_ts"] - t0) / 1000)
            await asyncio.sleep(0.3)
        await user.close()
        p50o, p95o, p50b, p95b = pct(ours, 50), pct(ours, 95), pct(base, 50), pct(base, 95)
        print(f"samples: {samples}")
        print(
            f"rtcbot    p50 {p50o * 1000:6.0f} ms   p95 {p95o * 1000:6.0f} ms   "
            f"mean {statistics.mean(ours) * 1000:6.0f} ms"
        )
        print(
            f"echo bot  p50 {p50b * 1000:6.0f} ms   p95 {p95b * 1000:6.0f} ms   "
            f"mean {statistics.mean(base) * 1000:6.0f} ms"
        )
        print(f"ratio     p50 {p50o / p50b:.2f}×   p95 {p95o / p95b:.2f}×")
    finally:
        if echo_proc:
            echo_proc.terminate()
            echo_proc.wait(10)
        stack.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--samples", type=int, default=40)
    p.add_argument("--quick", action="store_true", help="4 samples, for the test suite")
    a = p.parse_args()
    asyncio.run(run(4 if a.quick else a.samples))
    sys.exit(0)
