"""Who is joined to a room, as the bot's homeserver sees it, cached briefly.

The authorization service asks this before it issues a LiveKit token for a room. A positive
answer is cached for `ttl` seconds (a user who left may still get a token for that long);
anything else is asked again, so someone who has just joined is not refused from a stale
entry. Concurrent questions about one room share one request.
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
        max_rooms: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._max_rooms = max_rooms
        self._clock = clock
        self._cache: dict[str, _Entry] = {}

    async def membership(self, room_id: str, user_id: str) -> Membership:
        """Raise MembershipUnknown when the homeserver cannot tell."""
        entry = self._cache.get(room_id)
        if not (
            entry is not None
            and entry.members is not None
            and user_id in entry.members
            and self._clock() - entry.fetched < self._ttl
        ):
            entry = await self._refresh(room_id)
        if entry.members is None:
            return Membership.BOT_NOT_IN_ROOM
        return Membership.JOINED if user_id in entry.members else Membership.NOT_JOINED

    async def _refresh(self, room_id: str) -> _Entry:
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
