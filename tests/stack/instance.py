"""Stopping the rtcbot instance in a test and reading what its stop left behind."""

from __future__ import annotations

import re

from rtcbot_stack.stack import Stack
from tests.stack.eventually import eventually

_STOP_LINE = re.compile(r"rtcbot stopped; (\d+) of its tasks")


async def stop_instance(stack: Stack, timeout: float = 60) -> tuple[int, str]:
    """Stop the instance in maubot; wait for the plugin's stop line in the maubot log.
    Returns how many of its tasks were still running, and the log written meanwhile."""
    log = stack.maubot.child.log_path
    offset = len(log.read_text())
    stack.maubot.api("PUT", "/instance/rtcbot", {"started": False})
    m = await eventually(
        lambda: _STOP_LINE.search(log.read_text()[offset:]),
        timeout=timeout,
        what="the stop line in the maubot log",
        interval=0.2,
    )
    return int(m.group(1)), log.read_text()[offset:]
