"""What one manager needs of another, as narrow protocols that bot.py satisfies by wiring.

A manager depends on one of these, never on the plugin object or on another manager's
attributes: the media roles see the calls through `CallMembership`, diagnostics and schedules
through `CallDirectory`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from .matrix.publisher import MembershipPublisher
from .rtc.member_fields import Transport
from .rtc.session import CallEnded, CallStarted, RoomCalls

CallEvent = CallStarted | CallEnded
# Called with (room_id, event) when a call starts or ends in a room (never for the bot's own).
CallObserver = Callable[[str, CallEvent], Coroutine[Any, Any, None]]
# The LiveKit service URL the homeserver advertises (MSC4143), "" when none.
TransportUrl = Callable[[], Awaitable[str]]
# The bot's own LiveKit transport (config, else what the homeserver advertises), or None.
HomeTransport = Callable[[], Awaitable[Transport | None]]


class CallDirectory(Protocol):
    """Read access to the call model of the rooms and to the bot's own memberships."""

    async def room(self, room_id: str) -> RoomCalls: ...

    async def display_name(self, room_id: str, user_id: str) -> str: ...

    def known_name(self, room_id: str, user_id: str) -> str | None:
        """A display name already looked up (no request): for hot paths."""
        ...

    def member_by_identity(self, room_id: str, identity: str) -> tuple[str, str] | None:
        """(user, device) of the call member with this LiveKit identity, from the call model
        (no request); also for the hashed identities of sticky matrix_2_0 memberships."""
        ...

    def publisher(self, room_id: str) -> MembershipPublisher | None: ...

    async def has_people(self, room_id: str) -> bool:
        """Whether a call with at least one person (not the bot) is going on in the room."""
        ...


class CallMembership(CallDirectory, Protocol):
    """The bot's own membership in a room's call."""

    async def require_call(self, room_id: str) -> None:
        """Raise PublishError (a sentence for people) unless the bot may be in a call here:
        people are in one, or the config lets the bot start calls."""
        ...

    async def join(
        self, room_id: str, intent: str = "audio", remember: bool = True
    ) -> MembershipPublisher: ...

    async def leave(self, room_id: str) -> bool: ...
