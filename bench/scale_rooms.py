"""Scale: the bot watches N rooms while call memberships churn at R events/s.

Setup: 20 users create N rooms with the bot invited. Churn: every 1/R s one room's creator
toggles their call membership (start → "📞 … started", end → "Call ended …"), for D seconds.
Reaction = the bot's notice origin_server_ts − the membership event's origin_server_ts.
Memory: maubot's RSS idle (no rooms), with N rooms joined, and the peak during churn.

    python -m rtcbot_stack.netns -- .venv/bin/python -m bench.scale_rooms --rooms 1000 --rate 50

`--quick` (10 rooms, 5 events/s for 4 s) runs in `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

from bench.common import pct, rss_mb
from bench.common import process_cpu_s as cpu_s
from rtcbot_stack import netns
from rtcbot_stack.stack import Stack, StackSettings
from tests.stack.matrix_user import CALL_MEMBER, MatrixUser, body, call_member_content


async def run(n_rooms: int, rate: float, duration: float) -> None:
    state = Path(tempfile.mkdtemp(prefix="rtcbot-scale-"))
    stack = Stack(StackSettings(state_dir=state, netns=netns.current(), demo_room=False)).start()
    try:
        pid = stack.maubot.child.pid
        await asyncio.sleep(5)
        idle = rss_mb(pid)
        print(f"maubot RSS idle (no rooms): {idle:.0f} MB", flush=True)
        bot = stack.bot["user_id"]
        users = []
        for i in range(20):
            stack.synapse.register(f"churn{i}", "pw")
            login = stack.synapse.login(f"churn{i}", "pw", f"CHURN{i}")
            users.append(
                MatrixUser(stack.synapse.url, login["user_id"], login["access_token"], f"CHURN{i}")
            )
        t0 = time.monotonic()
        sem = asyncio.Semaphore(10)

        async def make(i: int) -> tuple[str, MatrixUser]:
            async with sem:
                user = users[i % len(users)]
                return await user.create_room(invite=[bot], name=f"scale {i}"), user

        rooms = await asyncio.gather(*(make(i) for i in range(n_rooms)))
        print(f"{n_rooms} rooms created in {time.monotonic() - t0:.0f} s", flush=True)
        while True:
            joined = stack.synapse.api("GET", "joined_rooms", stack.bot["access_token"])
            if len(joined["joined_rooms"]) >= n_rooms:
                break
            await asyncio.sleep(1)
        print(f"bot joined all rooms after {time.monotonic() - t0:.0f} s", flush=True)
        await asyncio.sleep(5)
        with_rooms = rss_mb(pid)
        print(f"maubot RSS with {n_rooms} rooms: {with_rooms:.0f} MB", flush=True)

        in_call: dict[str, bool] = {}
        sent: list[tuple[str, str]] = []  # (room, event id)
        peak = with_rooms
        start = time.monotonic()
        cpu0 = {"maubot": cpu_s(pid), "synapse": cpu_s(stack.synapse.child.pid)}
        tasks = []

        async def toggle(room: str, user: MatrixUser) -> None:
            joining = not in_call.get(room, False)
            in_call[room] = joining
            key = f"_{user.user_id}_{user.device_id}_m.call"
            resp = await user.put_state(
                room, CALL_MEMBER, key, call_member_content(user) if joining else {}
            )
            sent.append((room, resp["event_id"]))

        i = 0
        while time.monotonic() - start < duration:
            room, user = random.choice(rooms)
            tasks.append(asyncio.ensure_future(toggle(room, user)))
            i += 1
            if i % int(rate) == 0:
                peak = max(peak, rss_mb(pid))
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.gather(*tasks)
        churn_s = time.monotonic() - start
        achieved = len(sent) / churn_s
        cpu = {
            "maubot": cpu_s(pid) - cpu0["maubot"],
            "synapse": cpu_s(stack.synapse.child.pid) - cpu0["synapse"],
        }
        for _ in range(10):
            await asyncio.sleep(1)
            peak = max(peak, rss_mb(pid))

        # Match every membership event with the bot's first notice after it in its room.
        latencies: list[float] = []
        missing = 0
        by_room: dict[str, set[str]] = {}
        for room, eid in sent:
            by_room.setdefault(room, set()).add(eid)
        owner = dict(rooms)
        for room, eids in by_room.items():
            events = await owner[room].messages(room, 200)
            pending: list[int] = []
            for e in events:
                if e.get("event_id") in eids:
                    pending.append(e["origin_server_ts"])
                elif e.get("sender") == bot and e.get("type") == "m.room.message" and pending:
                    text = body(e)
                    if text.startswith(("📞", "Call ended")):
                        latencies.append((e["origin_server_ts"] - pending.pop(0)) / 1000)
            missing += len(pending)
        for u in users:
            await u.close()
        print(f"\nchurn: {len(sent)} membership events at {achieved:.1f}/s over {n_rooms} rooms")
        print(
            f"reaction p50 {pct(latencies, 50) * 1000:.0f} ms, p95 {pct(latencies, 95) * 1000:.0f}"
            f" ms, max {max(latencies) * 1000:.0f} ms; events without a notice: {missing}"
        )
        print(
            f"CPU while sending ({churn_s:.0f} s): maubot {cpu['maubot']:.1f} s "
            f"({cpu['maubot'] / churn_s:.0%} of a core), Synapse {cpu['synapse']:.1f} s "
            f"({cpu['synapse'] / churn_s:.0%} of a core)"
        )
        print(
            f"maubot RSS: idle {idle:.0f} MB, {n_rooms} rooms {with_rooms:.0f} MB, "
            f"peak during churn {peak:.0f} MB"
        )
    finally:
        stack.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--rooms", type=int, default=1000)
    p.add_argument("--rate", type=float, default=50)
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--quick", action="store_true", help="10 rooms, 5 events/s for 4 s")
    a = p.parse_args()
    asyncio.run(run(10, 5, 4) if a.quick else run(a.rooms, a.rate, a.duration))
