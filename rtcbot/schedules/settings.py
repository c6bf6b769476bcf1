"""The config section of scheduled calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import ConfigError, Reader, flag, setting, text, whole
from .parse import UnknownTimezone, resolve_timezone


def timezone() -> Reader:
    def read(raw: Any, key: str, default: Any) -> str:
        name = text(empty_is_default=True)(raw, key, default)
        try:
            return resolve_timezone(name)
        except UnknownTimezone as e:
            hint = f" (did you mean {e.suggestion}?)" if e.suggestion else ""
            raise ConfigError(
                f"{key} must be a time zone name such as Europe/Berlin or UTC, got {name!r}{hint}"
            ) from None

    return read


@dataclass(frozen=True)
class ScheduleSettings:
    default_timezone: str = setting("UTC", timezone(), "for rooms that set none")
    grace_minutes: int = setting(10, whole(0, 7 * 24 * 60), "a late start is still announced")
    mention_room: bool = setting(True, flag(), "the start notice mentions the room (@room)")
    nobody_joined_note: bool = setting(True, flag(), "say so when nobody joined")
