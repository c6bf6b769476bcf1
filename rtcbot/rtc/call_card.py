"""The call card: what a room reads when a call ends. Pure: events and intervals in, text out.

``CallLog`` follows one call through the events rtc/session.py derives (CallStarted,
MemberJoined, MemberLeft, CallEnded) and keeps, per person (not per device), when they were in
it. ``build_card`` adds who spoke when (intervals from the recorder's audio or LiveKit's active
speakers, media/talk_timeline.py) and gives a ``CallCard``; ``card_markdown`` its text. Times
are unix milliseconds; nothing here reads a clock, logs or talks to the network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any, Final

from .announce import people
from .session import ActiveCall, CallEnded, CallEvent, CallStarted, MemberJoined, MemberLeft

Interval = tuple[int, int]  # [start, end) in unix ms
_MAX_ROWS: Final = 30  # a card lists at most this many people (the rest are counted)


@dataclass
class CallLog:
    """One call's people: per user, the stints (joined, left or None while still in)."""

    room_id: str
    slot_id: str
    started_ms: int
    # True when the bot started watching after the call began (after a restart): joins
    # before that are those of the call model, not seen one by one.
    partial: bool = False
    stints: dict[str, list[list[int | None]]] = field(default_factory=dict)
    ended_ms: int | None = None
    peak: int = 0

    @classmethod
    def seeded(cls, call: ActiveCall) -> CallLog:
        """A log for a call that was already going on: its members since they joined."""
        log = cls(call.room_id, call.slot_id, call.started_at_ms, partial=True)
        for m in sorted(call.members.values(), key=lambda m: (m.since_ms, m.user_id)):
            if not log.is_in(m.user_id):
                log.stints.setdefault(m.user_id, []).append([m.since_ms, None])
        log.peak = max(call.peak_participants, log.present())
        return log

    def is_in(self, user_id: str) -> bool:
        spans = self.stints.get(user_id)
        return bool(spans) and spans[-1][1] is None  # type: ignore[index]

    def present(self) -> int:
        return sum(1 for u in self.stints if self.is_in(u))

    def apply(self, ev: CallEvent) -> None:
        """Take one derived event of this call (other calls' events are the caller's to sort)."""
        if isinstance(ev, CallStarted):
            self.started_ms = min(self.started_ms, ev.at_ms)
        elif isinstance(ev, MemberJoined):
            # A second device of someone already in changes nothing; a first one is a (re)join.
            if not self.is_in(ev.user_id):
                self.stints.setdefault(ev.user_id, []).append([ev.at_ms, None])
            self.peak = max(self.peak, self.present())
        elif isinstance(ev, MemberLeft):
            if ev.other_devices == 0 and self.is_in(ev.user_id):
                self.stints[ev.user_id][-1][1] = ev.at_ms
        elif isinstance(ev, CallEnded):
            for spans in self.stints.values():
                if spans[-1][1] is None:
                    spans[-1][1] = ev.at_ms
            self.ended_ms = ev.at_ms
            self.started_ms = min(self.started_ms, ev.started_at_ms)
            self.peak = max(self.peak, ev.peak_participants)


@dataclass(frozen=True)
class PersonRow:
    user_id: str
    name: str  # people's text, raw: escaped where it is rendered
    stints: tuple[Interval, ...]
    talk: tuple[Interval, ...] = ()
    talk_ms: int | None = None  # None: unknown

    @property
    def present_ms(self) -> int:
        return sum(e - s for s, e in self.stints)


@dataclass(frozen=True)
class CallCard:
    started_ms: int
    ended_ms: int
    peak: int
    people: tuple[PersonRow, ...]
    talk_source: str | None  # "recording", "LiveKit's active speakers"…; None: unknown
    partial: bool = False

    @property
    def duration_ms(self) -> int:
        return max(0, self.ended_ms - self.started_ms)

    def to_json(self) -> dict[str, Any]:
        """Machine-readable (the event's `dev.rtcbot.call_card`): numbers, user IDs, no names."""
        return {
            "started_ms": self.started_ms,
            "ended_ms": self.ended_ms,
            "duration_ms": self.duration_ms,
            "people": len(self.people),
            "peak": self.peak,
            "talk_source": self.talk_source,
            "partial": self.partial,
            "rows": [
                {
                    "user_id": p.user_id,
                    "stints": [list(s) for s in p.stints],
                    "talk_ms": p.talk_ms,
                    "talk": [list(t) for t in p.talk],
                }
                for p in self.people
            ],
        }


def merge(intervals: Iterable[Interval], gap_ms: int = 0) -> list[Interval]:
    """Sorted, with overlapping ones (or ones closer than `gap_ms`) joined."""
    out: list[list[int]] = []
    for s, e in sorted(intervals):
        if e <= s:
            continue
        if out and s - out[-1][1] <= gap_ms:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def clip(intervals: Iterable[Interval], start: int, end: int) -> list[Interval]:
    return [(max(s, start), min(e, end)) for s, e in intervals if e > start and s < end]


def build_card(
    log: CallLog,
    names: Mapping[str, str],
    talk: Mapping[str, Sequence[Interval]] | None,
    talk_source: str | None = None,
) -> CallCard:
    """The card of an ended call. `talk`: who spoke when (None: unknown), counted while the
    person was in the call; people who spoke without a membership the bot saw are added
    after the others."""
    end = log.ended_ms if log.ended_ms is not None else log.started_ms
    rows: list[PersonRow] = []
    users = list(log.stints)
    if talk is not None:
        users += [u for u in talk if u not in log.stints and clip(talk[u], log.started_ms, end)]
    for user in users:
        spans = tuple(
            (int(s), int(e if e is not None else end))  # type: ignore[arg-type]
            for s, e in log.stints.get(user, [])
        )
        spoke: tuple[Interval, ...] = ()
        talk_ms: int | None = None
        if talk is not None:
            spoke = tuple(merge(clip(talk.get(user, ()), log.started_ms, end)))
            if spans:  # LiveKit's speaker levels linger: not past the person's presence
                spoke = tuple(piece for s, e in spans for piece in clip(spoke, s, e))
            talk_ms = sum(e - s for s, e in spoke)
        rows.append(PersonRow(user, names.get(user, _localpart(user)), spans, spoke, talk_ms))
    return CallCard(
        started_ms=log.started_ms,
        ended_ms=end,
        peak=max(log.peak, 1 if rows else 0),
        people=tuple(rows),
        talk_source=talk_source if talk is not None else None,
        partial=log.partial,
    )


def _localpart(user_id: str) -> str:
    return user_id[1:].split(":")[0] if user_id.startswith("@") else user_id


def format_duration_precise(duration_ms: int) -> str:
    """ "40 s", "1 min 05 s", "1 h 02 min" (rounded down)."""
    seconds = max(0, duration_ms) // 1000
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def headline(card: CallCard) -> str:
    """The card's first line, the one the plain end-of-call notice had (tests look for it)."""
    return f"Call ended after {format_duration_precise(card.duration_ms)} · {people(len(card.people))}"


def _clock(ms: int, tz: tzinfo, with_date: bool = False) -> str:
    at = datetime.fromtimestamp(ms / 1000, tz)
    return at.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")


def card_markdown(
    card: CallCard,
    escape: Callable[[str], str],
    tz: tzinfo = UTC,
    tz_name: str = "UTC",
    why_unknown: str | None = None,
) -> str:
    """The card as markdown. `escape` makes people's text literal (matrix/notices.md_escape)."""
    multi_day = _clock(card.started_ms, tz, True)[:10] != _clock(card.ended_ms, tz, True)[:10]
    start = _clock(card.started_ms, tz, with_date=True)
    end = _clock(card.ended_ms, tz, with_date=multi_day)
    lines = [
        headline(card),
        "",
        f"🕑 {start} – {end} ({escape(tz_name)}) · at most {card.peak} at once"
        + (" · I came in after the call began" if card.partial else ""),
        "",
    ]
    for row in card.people[:_MAX_ROWS]:
        stints = ", ".join(
            f"{_clock(s, tz)}–{_clock(e, tz)}" if e > s else f"{_clock(s, tz)}"
            for s, e in row.stints
        )
        where = f"in {stints}" if stints else "in the media only"
        if len(row.stints) > 1:
            where += f" (joined {len(row.stints)} times)"
        talked = (
            f" · spoke {format_duration_precise(row.talk_ms)}"
            if row.talk_ms is not None
            else " · not recorded (at their request)"
            if card.talk_source is not None
            else ""
        )
        lines.append(f"- **{escape(row.name)}** {where}{talked}")
    if len(card.people) > _MAX_ROWS:
        lines.append(f"- and {len(card.people) - _MAX_ROWS} more")
    if card.talk_source is not None:
        lines += ["", f"Talk time from the {card.talk_source}."]
    elif why_unknown:  # the bot was in the media and still cannot tell: say why
        lines += ["", f"Talk time unknown: {why_unknown}."]
    # Not in the call's media at all: nothing to say about talk time (most calls).
    return "\n".join(lines)
