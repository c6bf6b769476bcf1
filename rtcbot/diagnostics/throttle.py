"""How often `!call diag` may run: once per room at a time, and not again anywhere within a
few seconds of the last start. Each run schedules, restarts and cancels a delayed event and
mints an OpenID token: the bot's own per-user rate limits, which its heartbeats in every call
need (review M4)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

COOLDOWN_S = 5.0  # between two starts, over all rooms


class DiagThrottle:
    def __init__(
        self, cooldown_s: float = COOLDOWN_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._running: set[str] = set()
        self._last_start: float | None = None

    def refusal(self, room_id: str, command: str) -> str | None:
        """None if a run may start now; else the short answer for the room."""
        if room_id in self._running:
            return (
                f"`{command}` is running in this room already: its report above fills in "
                "as the checks finish."
            )
        if self._last_start is not None:
            wait = self._last_start + self.cooldown_s - self.clock()
            if wait > 0:
                return (
                    f"`{command}` ran moments ago (it spends the bot's own rate limits); "
                    f"try again in {math.ceil(wait)} s."
                )
        return None

    @contextmanager
    def running(self, room_id: str) -> Iterator[None]:
        """Around one run: the room is busy until it ends; the cooldown counts from its start."""
        self._running.add(room_id)
        self._last_start = self.clock()
        try:
            yield
        finally:
            self._running.discard(room_id)
