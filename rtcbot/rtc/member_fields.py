"""The fields of a call membership, checked one by one (pure): numbers that can be timestamps,
strings, user IDs, transports, the event envelope. A failure raises ``Invalid`` with a reason."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, TypeGuard

# JSON numbers from JS clients are doubles; anything past this cannot be a real timestamp.
MAX_SAFE_INT: Final = 2**53 - 1
# A user ID's localpart cannot contain ":", its server name cannot contain "_".
_USER_ID = re.compile(r"@[^:\s]+:[^\s_]+")
MISSING: Final = object()


@dataclass(frozen=True)
class Transport:
    """One RTC transport (SFU) a member advertises; ``raw`` keeps unknown fields."""

    type: str
    livekit_service_url: str | None
    livekit_alias: str | None
    raw: Mapping[str, Any] = field(compare=False, repr=False)
    # The SFU's WebSocket URL (Synapse ≥ 1.161, MSC4512): its token comes from the
    # homeserver's `rtc/livekit/get_token`, not from `livekit_service_url`'s OpenID flow.
    url: str | None = None

    @property
    def key(self) -> str | None:
        """What names this SFU: its `url` where present (EC ≥ 0.28 keys SFUs by it), else
        its authorization service; None for a transport that is neither."""
        if self.type != "livekit":
            return None
        found = self.url or self.livekit_service_url
        return found.rstrip("/") if found else None


class Invalid(Exception):
    """A validation failure; membership parsing turns it into ``ParseResult(status="invalid")``."""


def as_number(value: object) -> int | None:
    """A JSON number usable as a timestamp or duration, else None. ``True`` is no number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= MAX_SAFE_INT else None
    if isinstance(value, float) and math.isfinite(value) and 0 <= value <= MAX_SAFE_INT:
        return int(value)
    return None


def opt_number(content: Mapping[str, Any], name: str) -> int | None:
    value = content.get(name, MISSING)
    if value is MISSING:
        return None
    number = as_number(value)
    if number is None:
        raise Invalid(f"{name} must be a non-negative number")
    return number


def req_str(content: Mapping[str, Any], name: str, *, allow_empty: bool = True) -> str:
    value = content.get(name, MISSING)
    if not isinstance(value, str):
        raise Invalid(f"{name} must be a string")
    if not allow_empty and not value:
        raise Invalid(f"{name} must not be empty")
    return value


def opt_str(content: Mapping[str, Any], name: str) -> str | None:
    value = content.get(name, MISSING)
    if value is MISSING:
        return None
    if not isinstance(value, str):
        raise Invalid(f"{name} must be a string")
    return value


def is_user_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _USER_ID.fullmatch(value) is not None


def parse_transport(value: object, where: str) -> Transport:
    if not isinstance(value, Mapping) or not isinstance(value.get("type"), str):
        raise Invalid(f"{where} entries must be objects with a string type")
    service = value.get("livekit_service_url")
    alias = value.get("livekit_alias")
    sfu = value.get("url")
    return Transport(
        type=value["type"],
        livekit_service_url=service if isinstance(service, str) and service else None,
        livekit_alias=alias if isinstance(alias, str) else None,
        raw=MappingProxyType(dict(value)),
        url=sfu if isinstance(sfu, str) and sfu.startswith(("ws://", "wss://")) else None,
    )


def parse_transports(value: object, where: str) -> tuple[Transport, ...]:
    # Strings and mappings are iterable too; only a JSON array is a list of transports.
    if not isinstance(value, list | tuple):
        raise Invalid(f"{where} must be an array")
    return tuple(parse_transport(item, where) for item in value)


def event_basics(event: object, expected_type: str) -> tuple[Mapping[str, Any], str, int]:
    """(content, sender, origin_server_ts) of a well-formed event envelope."""
    if not isinstance(event, Mapping):
        raise Invalid("event is not an object")
    if event.get("type") != expected_type:
        raise Invalid(f"event type is not {expected_type}")
    content = event.get("content")
    if not isinstance(content, Mapping):
        raise Invalid("content is not an object")
    sender = event.get("sender")
    if not is_user_id(sender):
        raise Invalid("sender is not a user ID")
    ots = as_number(event.get("origin_server_ts"))
    if ots is None:
        raise Invalid("origin_server_ts is missing or not a timestamp")
    return content, sender, ots


def event_id_of(event: Mapping[str, Any]) -> str | None:
    value = event.get("event_id")
    return value if isinstance(value, str) else None
