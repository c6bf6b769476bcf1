"""What a client hands the authorization service to delegate its delayed leave (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class LeaveRequest:
    """What a client handed over. `delay_id` is a capability: never log or show it."""

    livekit_room: str
    identity: str
    delay_id: str
    delay_timeout_ms: int
    server_name: str  # the server that vouched for the user: where the C-S API is looked up
    user_id: str
    room_id: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.livekit_room, self.identity)

    @property
    def timeout_s(self) -> float:
        return self.delay_timeout_ms / 1000

    def __repr__(self) -> str:  # never show the delay id
        return f"LeaveRequest({self.livekit_room!r}, {self.identity!r}, {self.user_id!r})"


class DelegationRefused(Exception):
    """A delegation that cannot be taken: the client-server API of the user's server is
    unknown ("unresolvable"), the user has too many ("too_many"), or the service is stopping
    or cannot store it ("unavailable")."""

    def __init__(
        self, kind: Literal["unresolvable", "too_many", "unavailable"], detail: str
    ) -> None:
        super().__init__(detail)
        self.kind = kind
