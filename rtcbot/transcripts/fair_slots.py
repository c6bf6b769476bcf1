"""The speech engine's job slots, shared fairly between rooms.

`max_jobs` transcriptions run at once. A freed slot goes to the rooms waiting in turn (round
robin), each room's own requests in order: a room that queued fifty files gets one slot, then
every other waiting room gets one, then it gets the next. An asyncio.Semaphore would serve
them first come, first served, and one room's flood would starve every other room.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import AsyncIterator


class FairSlots:
    def __init__(self, n: int) -> None:
        self.n = n
        self.busy = 0
        # Room → its waiters in order; the dict's order is the turn order.
        self._waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()

    def locked(self) -> bool:
        """No slot is free now (a new request would wait)."""
        return self.busy >= self.n or bool(self._waiting)

    def resize(self, n: int) -> None:
        self.n = n
        while self.busy < self.n and self._grant_next():
            pass

    @contextlib.asynccontextmanager
    async def turn(self, room: str) -> AsyncIterator[None]:
        if not self.locked():
            self.busy += 1
        else:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.setdefault(room, deque()).append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._release()  # granted, but cancelled before it ran: pass it on
                else:
                    self._forget(room, waiter)
                raise
        try:
            yield
        finally:
            self._release()

    def _grant_next(self) -> bool:
        """Give a slot to the next room in turn; False if nobody waits."""
        while self._waiting:
            room, queue = next(iter(self._waiting.items()))
            waiter = queue.popleft()
            if queue:
                self._waiting.move_to_end(room)  # its next request waits for the others
            else:
                del self._waiting[room]
            if not waiter.done():
                waiter.set_result(None)
                self.busy += 1
                return True
        return False

    def _release(self) -> None:
        self.busy -= 1
        if self.busy < self.n:
            self._grant_next()

    def _forget(self, room: str, waiter: asyncio.Future[None]) -> None:
        queue = self._waiting.get(room)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            if not queue:
                del self._waiting[room]
