"""Who is joined to a room, as the bot's homeserver sees it, cached briefly.

The authorization service asks this before it issues a LiveKit token for a room. A positive
answer is cached for `ttl` seconds (a user who left may still get a token for that long); any
other answer comes from a member set at most `refusal_ttl` seconds old, so someone who has
just joined waits that long at most, and a flood of callers who are not in a big room costs one
request every `refusal_ttl` (review finding 2). Concurrent questions about one room share one
request, and at most `max_fetches` rooms are asked at once (the Matrix client's pool is the
bot's own).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

from mautrix.api import Method, Path
from mautrix.client import Client
from mautrix.errors import MatrixRequestError

# The joined user ids, or None when the bot cannot see the room (not joined, unknown room).
Fetch = Callable[[str], Awaitable[frozenset[str] | None]]

DEFAULT_TTL = 15.0
DEFAULT_REFUSAL_TTL = 2.0  # fresher than DEFAULT_TTL: a refusal never outlives a positive
DEFAULT_MAX_FETCHES = 4
_REQUEST_TIMEOUT = 10.0


class Membership(Enum):
    JOINED = "joined"
    NOT_JOINED = "not_joined"
    BOT_NOT_IN_ROOM = "bot_not_in_room"


class MembershipUnknown(Exception):
    """The homeserver could not be asked (unreachable, 5xx, timeout)."""


@dataclass(frozen=True)
class _Entry:
    members: frozenset[str] | None
    fetched: float


class RoomMembers:
    def __init__(
        self,
        fetch: Fetch,
        *,
        ttl: float = DEFAULT_TTL,
        refusal_ttl: float = DEFAULT_REFUSAL_TTL,
        max_rooms: int = 1024,
        max_fetches: int = DEFAULT_MAX_FETCHES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._refusal_ttl = min(refusal_ttl, ttl)
        self._max_rooms = max_rooms
        self._clock = clock
        self._cache: dict[str, _Entry] = {}
        self._in_flight: dict[str, asyncio.Task[_Entry]] = {}
        self._fetches = asyncio.Semaphore(max_fetches)

    async def membership(self, room_id: str, user_id: str) -> Membership:
        """Raise MembershipUnknown when the homeserver cannot tell."""
        entry = self._cache.get(room_id)
        if entry is None or not self._fresh(entry, user_id):
            entry = await self._refresh(room_id)
        if entry.members is None:
            return Membership.BOT_NOT_IN_ROOM
        return Membership.JOINED if user_id in entry.members else Membership.NOT_JOINED

    def _fresh(self, entry: _Entry, user_id: str) -> bool:
        age = self._clock() - entry.fetched
        joined = entry.members is not None and user_id in entry.members
        return age < (self._ttl if joined else self._refusal_ttl)

    async def _refresh(self, room_id: str) -> _Entry:
        task = self._in_flight.get(room_id)
        if task is None:
            task = asyncio.ensure_future(self._fetch_entry(room_id))
            self._in_flight[room_id] = task
            task.add_done_callback(lambda _: self._in_flight.pop(room_id, None))
        # Shielded: one caller giving up does not cancel the answer the others wait for.
        return await asyncio.shield(task)

    async def _fetch_entry(self, room_id: str) -> _Entry:
        async with self._fetches:
            entry = _Entry(await self._fetch(room_id), self._clock())
        self._cache.pop(room_id, None)
        while len(self._cache) >= self._max_rooms:
            del self._cache[next(iter(self._cache))]  # the oldest entry
        self._cache[room_id] = entry
        return entry


def joined_members_of(client: Client) -> Fetch:
    """Ask the homeserver for a room's joined members as the bot.

    The raw endpoint, not `client.get_joined_members`: that one also rewrites the state store
    the call manager reads, and the authorization service must not touch anything else.
    """

    async def fetch(room_id: str) -> frozenset[str] | None:
        try:
            async with asyncio.timeout(_REQUEST_TIMEOUT):
                resp = await client.api.request(
                    Method.GET, Path.v3.rooms[room_id].joined_members, retry_count=0
                )
        except MatrixRequestError as e:
            if e.http_status in (400, 403, 404):
                return None  # the bot is not in the room, or there is no such room
            raise MembershipUnknown(f"{e.http_status} {type(e).__name__}") from None
        except Exception as e:
            raise MembershipUnknown(type(e).__name__) from None
        joined = resp.get("joined") if isinstance(resp, dict) else None
        if not isinstance(joined, dict):
            raise MembershipUnknown("joined_members answer without `joined`")
        return frozenset(str(u) for u in joined)

    return fetch
