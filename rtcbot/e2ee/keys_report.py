"""What `!call diag` shows of an encrypted call's media keys (filled in by CallKeys.report)."""

from __future__ import annotations

from dataclasses import dataclass

from ..rtc.e2ee_keys import Device


@dataclass(frozen=True)
class MemberKeys:
    """One member device as `!call diag` reports it."""

    user_id: str
    device_id: str
    identity: str
    keys: int  # distinct indexes received
    last_index: int | None
    last_age_s: float | None
    state: str | None  # LiveKit decryption state, None before any
    state_for_s: float | None
    own_key_sent_s: float | None  # seconds since the bot's key last went to that device


@dataclass(frozen=True)
class KeysReport:
    room_id: str
    own_index: int | None
    rotations: int
    members: list[MemberKeys]
    waiting: list[Device]  # keys received from devices that are not (yet) in the call
    own_state: str | None
