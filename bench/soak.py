"""Soak: N recordings in a row with transcripts on (the default), then idle; maubot's RSS after
each, to show whether memory stays flat, and the speech worker's (the model's process, a child
of maubot that exits after `transcripts.model_idle_s` unused) beside it.

Each recording: `!call record start` in a room with a call, P LiveKit peers each say a few
espeak-ng sentences, `!call record stop`, then wait for the transcript to be ready in the
recording's thread. With `--peers-leave-first` the peers leave the SFU room before
`!call record stop` (and come back for the next recording): the bot then disconnects from a
room nobody else is in, as at the end of a call, which the LiveKit SDK cleans up after
(bench.sdk_soak: it keeps ≈ 0.5 MB of every connection closed while others publish).
Printed per recording: RSS while recording (all P tracks flowing) and
RSS after its transcript, maubot's and the worker's. At the end: maubot idle for `--idle`
seconds, longer than `transcripts.model_idle_s` (300 s by default), so the worker exits, and
RSS again.

    python -m rtcbot_stack.netns -- .venv/bin/python -m bench.soak --recordings 50 --peers 4

`--quick` (3 recordings, 2 peers, the model released after 3 s) runs in `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import numpy as np

from bench.call_room import call_room, join_peer, sfu_identities
from bench.common import children_rss_mb, loadavg, rss_mb
from rtcbot_stack.stack import Stack
from tests.stack.eventually import eventually
from tests.stack.matrix_user import MatrixUser, body
from tests.stack.peers import SAMPLE_RATE, Peer, speech

LINES = (
    "We will ship the new release on Friday after the last review.",
    "I can write the notes for the meeting and send them to everyone.",
    "The budget for the next quarter still needs a decision from the board.",
    "Let us meet again next week and look at the numbers together.",
)


def _thread_root(evt: dict[str, Any]) -> str | None:
    rel = evt.get("content", {}).get("m.relates_to") or {}
    return rel.get("event_id") if rel.get("rel_type") == "m.thread" else None


async def _transcript_done(user: MatrixUser, room: str, bot: str, summary: str) -> str:
    """The final state of the recording's transcript progress message."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        events = await user.messages(room, 100)
        progress = [
            e["event_id"]
            for e in events
            if e.get("sender") == bot
            and _thread_root(e) == summary
            and body(e).startswith("📝 Transcrib")
        ]
        for e in events:
            rel = e.get("content", {}).get("m.relates_to") or {}
            if progress and rel.get("rel_type") == "m.replace" and rel["event_id"] in progress:
                text = str(e["content"]["m.new_content"].get("body", ""))
                if not text.startswith("📝 Transcribing"):
                    return text
        await asyncio.sleep(0.5)
    raise TimeoutError("no transcript within 300 s")


async def _peers_leave(stack: Stack, room: str, peers: list[Peer]) -> None:
    """The peers leave the SFU room; back once LiveKit has only the bot left there."""
    for peer in peers:
        await peer.close()
    gone = {p.identity for p in peers}

    async def left() -> bool:
        return not gone & await sfu_identities(stack, room)

    await eventually(left, timeout=30, what="the peers out of the SFU room", failure=TimeoutError)


async def run(
    recordings: int, n_peers: int, idle_s: float, model_idle_s: float | None, leave_first: bool
) -> None:
    extra = {} if model_idle_s is None else {"transcripts": {"model_idle_s": model_idle_s}}
    async with call_room("soak", n_peers, extra) as call:
        stack, user, room, bot, peers = call.stack, call.user, call.room, call.bot, call.peers
        said = [speech(LINES[i % len(LINES)], ("en-us", "en-gb")[i % 2]) for i in range(n_peers)]
        for peer in peers:
            await peer.publish_samples(np.zeros(SAMPLE_RATE // 10, dtype=np.int16))
        pid = stack.maubot.child.pid
        await asyncio.sleep(3)
        start_rss = rss_mb(pid)
        print(
            f"soak: {recordings} recordings of {n_peers} speakers, transcripts on"
            f"{', the peers leave first' if leave_first else ''}; maubot RSS "
            f"before the first {start_rss:.0f} MB; load {loadavg()}",
            flush=True,
        )
        during: list[float] = []
        after: list[float] = []
        worker: list[float] = []
        t_all = time.monotonic()
        for n in range(1, recordings + 1):
            # Waits for the reply itself: the last transcript's files may still be coming.
            start = await user.send_text(room, "!call record start")
            await user.wait_for(
                room,
                lambda e: e.get("sender") == bot and body(e).startswith("🔴 Recording started"),
                30,
                after=start,
            )
            await asyncio.sleep(2)  # subscribed to every track
            for peer, samples in zip(peers, said, strict=True):
                peer.play(samples)
            await asyncio.wait_for(asyncio.gather(*(p.played.wait() for p in peers)), 60)
            during.append(rss_mb(pid))
            await asyncio.sleep(1)
            if leave_first:
                await _peers_leave(stack, room, peers)
            stop = await user.send_text(room, "!call record stop")
            summary = await user.wait_for(
                room, lambda e: body(e).startswith("⏹️ Recording stopped"), 60, after=stop
            )
            final = await _transcript_done(user, room, bot, summary["event_id"])
            if leave_first:  # back for the next recording
                for i, peer in enumerate(peers):
                    peers[i] = await join_peer(stack, room, peer.identity)
                    await peers[i].publish_samples(np.zeros(SAMPLE_RATE // 10, dtype=np.int16))
            after.append(rss_mb(pid))
            worker.append(children_rss_mb(pid))
            print(
                f"recording {n:3d}: maubot RSS while recording {during[-1]:4.0f} MB, after its "
                f"transcript {after[-1]:4.0f} MB; speech worker {worker[-1]:4.0f} MB "
                f"({final[:40]})",
                flush=True,
            )
        took = time.monotonic() - t_all
        await asyncio.sleep(idle_s)
        idle, idle_worker = rss_mb(pid), children_rss_mb(pid)
        k = max(1, min(10, recordings // 3))
        first, last = statistics.median(after[:k]), statistics.median(after[-k:])
        # A recording's own cost: RSS while recording minus RSS after the previous transcript.
        rec = [d - a for d, a in zip(during[1:], after[:-1], strict=True)] or [
            during[0] - start_rss
        ]
        print(
            f"{recordings} recordings in {took:.0f} s. RSS after the transcript: first {k} "
            f"median {first:.0f} MB, last {k} median {last:.0f} MB (growth {last - first:+.0f} "
            f"MB). Recording {n_peers} tracks adds {statistics.median(rec):.0f} MB "
            f"({statistics.median(rec) / n_peers:.1f} MB per track). The speech worker: "
            f"{statistics.median(worker):.0f} MB (median after a transcript). After {idle_s:.0f} "
            f"s idle (model released): maubot {idle:.0f} MB, worker {idle_worker:.0f} MB; "
            f"load {loadavg()}",
            flush=True,
        )


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--recordings", type=int, default=50)
    p.add_argument("--peers", type=int, default=4)
    p.add_argument("--idle", type=float, default=330.0, help="seconds idle at the end")
    p.add_argument("--peers-leave-first", action="store_true", help="as at a call's end")
    p.add_argument("--quick", action="store_true", help="3 recordings, for the test suite")
    a = p.parse_args()
    if a.quick:
        asyncio.run(run(3, 2, 6.0, 3.0, a.peers_leave_first))
    else:
        asyncio.run(run(a.recordings, a.peers, a.idle, None, a.peers_leave_first))
