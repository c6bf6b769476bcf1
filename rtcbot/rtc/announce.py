"""The words people read about calls, and when to say them. Pure: time is passed in.

Posting a line per device that joins or leaves would flood a busy room, so joins and leaves are
collected by ``NoticeBatcher`` for a short window and summarised in one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from .session import CallEnded, CallEvent, CallStarted, MemberJoined

NotifyLevel = Literal["off", "summary", "all"]
NOTIFY_LEVELS: Final[tuple[NotifyLevel, ...]] = ("off", "summary", "all")
DEFAULT_BATCH_WINDOW_MS: Final = 10_000

_VOICE_INTENTS: Final = frozenset({"audio", "voice"})


def call_kind(intent: str | None) -> str:
    """The kind of call in words: "video call", "voice call", or just "call" if unknown."""
    if intent == "video":
        return "video call"
    if intent in _VOICE_INTENTS:
        return "voice call"
    return "call"


def describe_started(display_name: str, intent: str | None) -> str:
    return f"📞 {display_name} started a {call_kind(intent)}"


def join_names(names: Sequence[str], limit: int = 5) -> str:
    """English list: "A", "A and B", "A, B and C"; past ``limit``: "A, B, C, D and 3 others"."""
    items = list(names)
    if len(items) > limit:
        rest = len(items) - (limit - 1)
        items = [*items[: limit - 1], f"{rest} others"]
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} and {items[-1]}"


def describe_joins(names_joined: Sequence[str], names_left: Sequence[str]) -> str:
    """One line like "Bob and Carol joined · Eve left"; "" when there is nothing to say."""
    parts = []
    if names_joined:
        parts.append(f"{join_names(names_joined)} joined")
    if names_left:
        parts.append(f"{join_names(names_left)} left")
    return " · ".join(parts)


def format_duration(duration_ms: int) -> str:
    """Rounded down: "40 s" under a minute, "23 min" under an hour, then "1 h 5 min"."""
    seconds = max(0, duration_ms) // 1000
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def people(count: int) -> str:
    return f"{count} person" if count == 1 else f"{count} people"


def describe_ended(duration_ms: int, people_count: int) -> str:
    return f"Call ended after {format_duration(duration_ms)} · {people(people_count)}"


@dataclass(frozen=True)
class JoinBatch:
    """Who joined and who left one call during one window (user IDs, first-seen order)."""

    room_id: str
    slot_id: str
    joined: tuple[str, ...]
    left: tuple[str, ...]


Postable = CallEvent | JoinBatch


def should_post(level: str, event: Postable) -> bool:
    """Whether to post this at a room's notify level.

    "off": nothing; "summary": started/ended only; "all": also joins and leaves.

    An unknown level behaves like "summary" (config validation is the place to reject it).
    """
    if level == "off":
        return False
    if isinstance(event, CallStarted | CallEnded):
        return True
    return level == "all"


@dataclass
class _Window:
    opened_ms: int
    # user -> [was in the call before the window, is in it now]
    presence: dict[str, list[bool]] = field(default_factory=dict)


class NoticeBatcher:
    """Collects joins and leaves per (room, slot) and flushes them ``window_ms`` after the first.

    What a window reports is the *net* change per person: whether they were in the call when
    the window opened versus now. Hence:

    - join then leave in one window: nothing (they popped in and out; no one needs to know);
    - leave then join in one window: nothing either (a reconnect or a device switch — they were
      there before and still are);
    - join, leave, join: "joined". Leave, join, leave: "left".

    People, not devices: events with ``other_devices > 0`` don't change whether the person is in
    the call and are ignored. ``CallStarted`` marks the starter as already announced, so their own
    join does not follow "📞 Alice started a call". ``CallEnded`` drops the window: the summary
    line covers it.
    """

    def __init__(self, window_ms: int = DEFAULT_BATCH_WINDOW_MS) -> None:
        self.window_ms = window_ms
        self._windows: dict[tuple[str, str], _Window] = {}

    def add(self, event: CallEvent, now_ms: int) -> None:
        key = (event.room_id, event.slot_id)
        if isinstance(event, CallEnded):
            self._windows.pop(key, None)
            return
        if isinstance(event, CallStarted):
            self._window(key, now_ms).presence[event.started_by] = [True, True]
            return
        if event.other_devices > 0:
            return
        is_join = isinstance(event, MemberJoined)
        window = self._window(key, now_ms)
        state = window.presence.get(event.user_id)
        if state is None:
            # The first event tells what was true before: a leave means they were in.
            window.presence[event.user_id] = [not is_join, is_join]
        else:
            state[1] = is_join

    def _window(self, key: tuple[str, str], now_ms: int) -> _Window:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(now_ms)
        return window

    def next_flush_ms(self) -> int | None:
        """When the earliest open window is due, or None."""
        return min((w.opened_ms + self.window_ms for w in self._windows.values()), default=None)

    def flush_due(self, now_ms: int) -> list[JoinBatch]:
        """Close every window that is due; return the non-empty summaries."""
        due = [k for k, w in self._windows.items() if w.opened_ms + self.window_ms <= now_ms]
        return self._close(due)

    def flush_all(self) -> list[JoinBatch]:
        """Close every window now (e.g. on shutdown)."""
        return self._close(list(self._windows))

    def _close(self, keys: list[tuple[str, str]]) -> list[JoinBatch]:
        batches = []
        for key in keys:
            window = self._windows.pop(key)
            joined = tuple(u for u, (before, now) in window.presence.items() if now and not before)
            left = tuple(u for u, (before, now) in window.presence.items() if before and not now)
            if joined or left:
                batches.append(JoinBatch(key[0], key[1], joined, left))
        return batches

    def pending(self) -> int:
        """Open windows (for metrics and tests)."""
        return len(self._windows)
