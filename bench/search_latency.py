"""`!call search` over many calls: query latency of the transcript index (SQLite FTS5).

    .venv/bin/python -m bench.search_latency --calls 1000 --lines 120 --queries 200

Fills a fresh plugin database (the real migrations) with `calls` recorded calls of `lines`
transcript lines each, in 10 rooms, from a fixed vocabulary (seeded: the same data every
run), then times `TranscriptSearch.search` for one- and two-word queries in one room.
`--quick` (a few calls) runs in the unit tests, so a broken bench fails the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

from mautrix.util.async_db import Database

from bench.common import loadavg, pct
from rtcbot.migrations import upgrade_table
from rtcbot.transcripts.lines import Line
from rtcbot.transcripts.search import IndexedLine, TranscriptSearch

WORDS = (
    "budget launch website press release venue party friday march plan team design review "
    "customer meeting project deadline server database recording transcript summary action "
    "decision owner schedule holiday invoice contract hiring roadmap feedback testing deploy"
).split()
FILLER = "the a and we to of it is that this for on with will be as at so".split()


async def run(calls: int, lines: int, queries: int, rooms: int = 10) -> dict[str, float]:
    rnd = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        db = Database.create(f"sqlite:{Path(tmp) / 'bench.db'}", upgrade_table=upgrade_table)
        await db.start()
        try:
            search = TranscriptSearch(db)
            t0 = time.monotonic()
            for call in range(calls):
                room = f"!room{call % rooms}:bench"
                rows = []
                for i in range(lines):
                    words = [
                        rnd.choice(WORDS if rnd.random() < 0.3 else FILLER) for _ in range(14)
                    ]
                    line = Line(f"Speaker {i % 4}", i * 6.0, i * 6.0 + 5, " ".join(words))
                    rows.append(IndexedLine(line.speaker, f"@s{i % 4}:bench", line))
                await search.index(room, f"$rec{call}", f"$msg{call}", call * 1000, rows)
            fill_s = time.monotonic() - t0
            took = []
            for q in range(queries):
                text = " ".join(rnd.sample(WORDS, 1 + q % 2))
                start = time.perf_counter()
                await search.search("!room3:bench", text)
                took.append((time.perf_counter() - start) * 1000)
        finally:
            await db.stop()
    return {
        "rows": calls * lines,
        "fill_s": fill_s,
        "p50_ms": pct(took, 50),
        "p95_ms": pct(took, 95),
        "max_ms": max(took),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--lines", type=int, default=120)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="a few calls, for the test suite")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.lines, args.queries = 5, 20, 10
    before = loadavg()
    r = asyncio.run(run(args.calls, args.lines, args.queries))
    print(
        f"search over {args.calls} calls ({r['rows']:.0f} lines, filled in {r['fill_s']:.1f} s): "
        f"p50 {r['p50_ms']:.2f} ms, p95 {r['p95_ms']:.2f} ms, max {r['max_ms']:.2f} ms "
        f"over {args.queries} queries; load {before} → {loadavg()}"
    )


if __name__ == "__main__":
    main()
