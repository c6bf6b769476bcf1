"""Wall-clock milliseconds, as Matrix timestamps (origin_server_ts) count them."""

from __future__ import annotations

import time


def now_ms() -> int:
    return int(time.time() * 1000)
