"""A call's recap from its transcript: what to ask the model, and what to make of its answer.

Pure (no I/O; unit-tested). The transcript is cut into chunks that fit the model's input
(`max_input_chars`), each chunk is asked for a summary, decisions and action items (map), and
the parts are combined (reduce): the items are merged here, never rewritten by the model, and
the summaries, when there are several, go back to the model once to become one.

The model's words are untrusted text: every item is parsed from JSON, checked against the
transcript (an owner must be one of the call's speakers, or it is "unassigned"; the time span
is the transcript line the item was said in) and escaped when rendered. A recap is whole or
it is not posted: any chunk that fails fails the recap.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..matrix.notices import NAME_LIMIT, md_escape
from .lines import Line, stamp

MAX_ITEMS = 12  # per kind, per recap
ITEM_CHARS = 240
SUMMARY_CHARS = 900
UNASSIGNED = "unassigned"

MAP_INSTRUCTIONS = (
    "You summarise a part of a meeting transcript. Each line is `[mm:ss] Speaker: words`. "
    "Answer with one JSON object and nothing else: "
    '{"summary": "two or three sentences", '
    '"decisions": [{"text": "what was decided", "said_at": "mm:ss"}], '
    '"actions": [{"owner": "speaker name", "text": "what they will do", "said_at": "mm:ss"}]}. '
    "Use only what the transcript says; an action's owner is the speaker who will do it."
)
REDUCE_INSTRUCTIONS = (
    "These are summaries of consecutive parts of one meeting. Write one summary of the whole "
    'meeting in two to four sentences. Answer with one JSON object: {"summary": "..."}.'
)


@dataclass(frozen=True)
class Item:
    text: str
    owner: str  # a speaker's name, or UNASSIGNED (actions); "" for decisions
    start_s: float
    end_s: float


@dataclass
class Recap:
    summary: str
    decisions: list[Item] = field(default_factory=list)
    actions: list[Item] = field(default_factory=list)


class RecapError(Exception):
    """The model's answer could not be used; the text is for the log, not for the room."""


def line_text(line: Line) -> str:
    return f"[{stamp(line.start)}] {' '.join(line.speaker.split())}: {' '.join(line.text.split())}"


def chunks(lines: Sequence[Line], max_chars: int) -> list[list[Line]]:
    """Consecutive lines, each chunk at most `max_chars` of transcript text (a single longer
    line is cut to fit, so no chunk is ever over)."""
    out: list[list[Line]] = [[]]
    size = 0
    for line in lines:
        text = line_text(line)
        if len(text) > max_chars:
            keep = max(1, max_chars - (len(text) - len(line.text)) - 1)
            line = Line(line.speaker, line.start, line.end, line.text[:keep])
            text = line_text(line)
        if out[-1] and size + len(text) + 1 > max_chars:
            out.append([])
            size = 0
        out[-1].append(line)
        size += len(text) + 1
    return [c for c in out if c]


def map_messages(chunk: Sequence[Line]) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": MAP_INSTRUCTIONS},
        {"role": "user", "content": "\n".join(line_text(ln) for ln in chunk)},
    ]


def reduce_messages(summaries: Sequence[str]) -> list[dict[str, str]]:
    parts = "\n\n".join(f"Part {i + 1}: {s}" for i, s in enumerate(summaries))
    return [
        {"role": "system", "content": REDUCE_INSTRUCTIONS},
        {"role": "user", "content": parts},
    ]


def _json_object(answer: str) -> dict[str, object]:
    """The first JSON object in the answer (models wrap it in prose or code fences)."""
    start = answer.find("{")
    while start != -1:
        try:
            value, _end = json.JSONDecoder().raw_decode(answer[start:])
        except ValueError:
            start = answer.find("{", start + 1)
            continue
        if isinstance(value, dict):
            return value
        start = answer.find("{", start + 1)
    raise RecapError("the model's answer holds no JSON object")


def _clean(value: object, limit: int) -> str:
    text = " ".join(str(value).split()) if isinstance(value, (str, int, float)) else ""
    return text[:limit]


_STAMP = re.compile(r"^\s*\[?(?:(\d+):)?(\d{1,2}):(\d{2})\]?\s*$")


def _seconds(value: object) -> float | None:
    m = _STAMP.match(str(value)) if isinstance(value, str) else None
    if m is None:
        return None
    h, mi, s = (int(x) if x else 0 for x in m.groups())
    return float(h * 3600 + mi * 60 + s)


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"\w+", text.lower()) if len(w) > 2}


def _where(text: str, said_at: float | None, chunk: Sequence[Line]) -> Line:
    """The transcript line the item comes from: the one at its time stamp when that line shares
    a word with it, else the line sharing the most words (the first line if none does)."""
    words = _words(text)
    if said_at is not None:
        at = [ln for ln in chunk if int(ln.start) <= said_at <= max(ln.end, ln.start + 1)]
        for ln in at:
            if words & _words(ln.text):
                return ln
    return max(chunk, key=lambda ln: len(words & _words(ln.text)))


def _owner(value: object, speakers: Sequence[str]) -> str:
    name = _clean(value, NAME_LIMIT).casefold()
    for speaker in speakers:
        if name and (name == speaker.casefold() or name in speaker.casefold().split()):
            return speaker
    return UNASSIGNED


def parse_part(answer: str, chunk: Sequence[Line]) -> Recap:
    """One chunk's answer → its recap, every field checked against the chunk."""
    data = _json_object(answer)
    speakers = list(dict.fromkeys(ln.speaker for ln in chunk))
    recap = Recap(_clean(data.get("summary", ""), SUMMARY_CHARS))
    for kind in ("decisions", "actions"):
        raw = data.get(kind)
        for entry in raw if isinstance(raw, list) else []:
            if not isinstance(entry, dict):
                continue
            text = _clean(entry.get("text", ""), ITEM_CHARS)
            if not text:
                continue
            line = _where(text, _seconds(entry.get("said_at")), chunk)
            owner = _owner(entry.get("owner"), speakers) if kind == "actions" else ""
            getattr(recap, kind).append(Item(text, owner, line.start, line.end))
    if not recap.summary and not recap.decisions and not recap.actions:
        raise RecapError("the model's answer has no summary and no items")
    return recap


def parse_summary(answer: str) -> str:
    summary = _clean(_json_object(answer).get("summary", ""), SUMMARY_CHARS)
    if not summary:
        raise RecapError("the model's combined summary is empty")
    return summary


def combine(parts: Sequence[Recap], summary: str | None = None) -> Recap:
    """The parts' items in order, the same item said twice kept once."""
    out = Recap(summary if summary is not None else " ".join(p.summary for p in parts).strip())
    for kind in ("decisions", "actions"):
        seen: set[tuple[str, str]] = set()
        for part in parts:
            for item in getattr(part, kind):
                key = (item.owner.casefold(), " ".join(sorted(_words(item.text))))
                if key not in seen and len(getattr(out, kind)) < MAX_ITEMS:
                    seen.add(key)
                    getattr(out, kind).append(item)
    return out


def _span(item: Item) -> str:
    return f"{stamp(item.start_s)}–{stamp(item.end_s)}"


def render(recap: Recap, where: str) -> str:
    """The room's message (markdown); `where` names the model and where it runs."""
    out = [f"🧾 **Recap** ({md_escape(where, 120)})", md_escape(recap.summary, SUMMARY_CHARS)]
    if recap.decisions:
        out.append("**Decisions**")
        out += [f"- {md_escape(d.text, ITEM_CHARS)} ({_span(d)})" for d in recap.decisions]
    if recap.actions:
        out.append("**Action items**")
        out += [
            f"- **{md_escape(a.owner, NAME_LIMIT)}**: {md_escape(a.text, ITEM_CHARS)} ({_span(a)})"
            for a in recap.actions
        ]
    if not recap.decisions and not recap.actions:
        out.append("No decisions or action items were found.")
    return "\n".join(out)
