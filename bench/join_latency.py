"""Join latency and memory per recording.

Join latency: `!call record start` → (a) the bot's recorder is a participant of the LiveKit
room (RoomService ListParticipants, polled every 20 ms; hidden participants are listed there)
and (b) its call membership is in the room state (the state event's origin_server_ts). Both
measured from the command event's origin_server_ts (server clock) / its send time.
Memory: maubot's RSS idle, and while recording N publishing peers (RSS per track).

    python -m rtcbot_stack.netns -- .venv/bin/python -m bench.join_latency --runs 15 --peers 4

`--quick` (2 runs, 2 peers) runs in `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from livekit import api

from bench.call_room import call_room
from bench.common import pct, rss_mb
from rtcbot.rtc.identity import livekit_room_alias
from tests.stack.matrix_user import CALL_MEMBER, body


async def run(runs: int, n_peers: int) -> None:
    async with call_room("join", n_peers) as call:
        stack, user, room, bot = call.stack, call.user, call.room, call.bot
        key, secret = stack.secrets["livekit_api_key"], stack.secrets["livekit_api_secret"]
        lk_room = livekit_room_alias(room)
        for i, peer in enumerate(call.peers):
            await peer.publish_tone(300 + 70 * i)
        await asyncio.sleep(5)
        pid = stack.maubot.child.pid
        idle = rss_mb(pid)
        lk = api.LiveKitAPI(stack.livekit.url, key, secret)
        bot_identity = f"{bot}:{stack.bot['device_id']}"
        bot_key = f"_{bot}_{stack.bot['device_id']}_m.call"
        to_lk: list[float] = []
        to_state: list[float] = []
        recording_rss: list[float] = []
        for _ in range(runs):
            t_send = time.time()
            sent = await user.send_text(room, "!call record start")
            t_cmd = (await user.request_event(room, sent))["origin_server_ts"] / 1000
            seen_lk = None
            while seen_lk is None and time.time() - t_send < 30:
                resp = await lk.room.list_participants(api.ListParticipantsRequest(room=lk_room))
                if any(p.identity == bot_identity for p in resp.participants):
                    seen_lk = time.time()
                else:
                    await asyncio.sleep(0.02)
            member = None
            while member is None and time.time() - t_send < 30:
                try:
                    evt = await user.request_event(
                        room,
                        (await user.get_state_event_full(room, CALL_MEMBER, bot_key))["event_id"],
                    )
                    if evt.get("content") and evt["origin_server_ts"] / 1000 >= t_cmd:
                        member = evt["origin_server_ts"] / 1000
                except Exception:
                    pass
                if member is None:
                    await asyncio.sleep(0.05)
            assert seen_lk is not None and member is not None
            to_lk.append(seen_lk - t_send)
            to_state.append(member - t_cmd)
            await asyncio.sleep(4)
            recording_rss.append(rss_mb(pid))
            stop = await user.send_text(room, "!call record stop")
            await user.wait_for(room, lambda e: body(e).startswith("⏹️"), 60, after=stop)
            await asyncio.sleep(2)
        await lk.aclose()
        print(f"runs: {runs}, peers publishing: {n_peers}")
        print(
            f"command → bot in LiveKit room:   p50 {pct(to_lk, 50):.2f} s  p95 "
            f"{pct(to_lk, 95):.2f} s  max {max(to_lk):.2f} s"
        )
        print(
            f"command → membership in state:   p50 {pct(to_state, 50):.2f} s  p95 "
            f"{pct(to_state, 95):.2f} s  max {max(to_state):.2f} s"
        )
        # The first recording's RSS is the recorder's alone; its transcript then loads the
        # speech model, which stays for transcripts.model_idle_s (bench.soak separates them).
        first, later = recording_rss[0], statistics.median(recording_rss[1:] or recording_rss)
        print(
            f"maubot RSS: before recording {idle:.0f} MB, while recording {n_peers} tracks "
            f"{first:.0f} MB (first run) → {(first - idle) / n_peers:.1f} MB per track; later "
            f"runs, with the speech model loaded by the first transcript: {later:.0f} MB (median)"
        )


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--peers", type=int, default=4)
    p.add_argument("--quick", action="store_true", help="2 runs with 2 peers, for the test suite")
    a = p.parse_args()
    asyncio.run(run(2, 2) if a.quick else run(a.runs, a.peers))
