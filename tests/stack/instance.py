"""Stopping the rtcbot instance in a test and reading what its stop left behind."""

from __future__ import annotations

import asyncio
import re
import time

from rtcbot_stack.stack import Stack

_STOP_LINE = re.compile(r"rtcbot stopped; (\d+) of its tasks")


async def stop_instance(stack: Stack, timeout: float = 60) -> tuple[int, str]:
    """Stop the instance in maubot; wait for the plugin's stop line in the maubot log.
    Returns how many of its tasks were still running, and the log written meanwhile."""
    log = stack.maubot.child.log_path
    offset = len(log.read_text())
    stack.maubot.api("PUT", "/instance/rtcbot", {"started": False})
    deadline = time.monotonic() + timeout
    while (m := _STOP_LINE.search(written := log.read_text()[offset:])) is None:
        assert time.monotonic() < deadline, "no stop line in the maubot log"
        await asyncio.sleep(0.2)
    return int(m.group(1)), written
