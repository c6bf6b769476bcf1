"""A call's recap from its transcript: what to ask the model, and what to make of its answer.

Pure (no I/O; unit-tested). The transcript is cut into chunks that fit the model's input
(`max_input_chars`), each chunk is asked for a summary, decisions and action items (map), and
the parts are combined (reduce): the items are merged here, never rewritten by the model, and
the summaries, when there are several, go back to the model once to become one.

The model's words are untrusted text: every item is parsed from JSON and checked against the
transcript (it must share words with the line it is placed at, whose time span it gets; an
action's owner is the speaker whose own lines it was found in) and escaped when rendered. A recap is whole or
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

# What is asked of the model, per part of the transcript: the summary and the decisions from
# all its lines; then, per speaker, the tasks that speaker took on, from that speaker's own
# lines (so an action's owner is who said it, by construction; small models mix up owners
# when asked for everyone at once). Each prompt has one worked example; each answer's JSON
# schema is sent along (servers that support it constrain the answer to it).
SUMMARY_INSTRUCTIONS = (
    "You write the recap of a part of a meeting. Each line of the transcript is "
    "`[mm:ss] Speaker: words`. Answer with JSON: summary (two or three sentences), decisions "
    "(what the group agreed on, in the transcript's words, with the time it was said)."
)
SUMMARY_EXAMPLE = (
    "[00:01] Ann: We agreed to move the meeting to Tuesday.\n"
    "[00:05] Tom: I will send the invitation today.",
    json.dumps(
        {
            "summary": "The meeting moves to Tuesday. Tom sends the invitation.",
            "decisions": [{"text": "move the meeting to Tuesday", "said_at": "00:01"}],
        }
    ),
)
ACTIONS_INSTRUCTIONS = (
    "These are the lines one person said in a meeting, `[mm:ss] words`. List the tasks this "
    "person said they will do, in their words, with the time it was said. Answer with JSON; "
    "an empty list if they took on no task."
)
ACTIONS_EXAMPLE = (
    "[00:02] Good morning.\n[00:05] I will send the invitation today.\n[00:09] It is sunny.",
    json.dumps({"actions": [{"text": "send the invitation today", "said_at": "00:05"}]}),
)
REDUCE_INSTRUCTIONS = (
    "These are summaries of consecutive parts of one meeting. Write one summary of the whole "
    'meeting in two to four sentences. Answer with JSON: {"summary": "..."}.'
)
_ITEM = {
    "type": "object",
    "properties": {"text": {"type": "string"}, "said_at": {"type": "string"}},
    "required": ["text", "said_at"],
}
SUMMARY_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {"summary": {"type": "string"}, "decisions": {"type": "array", "items": _ITEM}},
    "required": ["summary", "decisions"],
}
ACTIONS_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {"actions": {"type": "array", "items": _ITEM}},
    "required": ["actions"],
}
REDUCE_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {"summary": {"type": "string"}},
    "required": ["summary"],
}


@dataclass(frozen=True)
class Request:
    """One question to the model: its messages, the answer's schema, the lines it is about
    (and whose, for a speaker's actions)."""

    messages: list[dict[str, str]]
    schema: dict[str, object]
    lines: list[Line]
    speaker: str = ""


@dataclass(frozen=True)
class Item:
    text: str
    owner: str  # the speaker who took it on (actions); "" for decisions
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


def _ask(instructions: str, example: tuple[str, str], question: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": instructions},
        {"role": "user", "content": example[0]},
        {"role": "assistant", "content": example[1]},
        {"role": "user", "content": question},
    ]


def part_requests(chunk: Sequence[Line]) -> list[Request]:
    """The summary and decisions of a part, then each of its speakers' actions."""
    out = [
        Request(
            _ask(SUMMARY_INSTRUCTIONS, SUMMARY_EXAMPLE, "\n".join(line_text(ln) for ln in chunk)),
            SUMMARY_SCHEMA,
            list(chunk),
        )
    ]
    for speaker in dict.fromkeys(ln.speaker for ln in chunk):
        own = [ln for ln in chunk if ln.speaker == speaker]
        said = "\n".join(f"[{stamp(ln.start)}] {' '.join(ln.text.split())}" for ln in own)
        out.append(
            Request(
                _ask(ACTIONS_INSTRUCTIONS, ACTIONS_EXAMPLE, said), ACTIONS_SCHEMA, own, speaker
            )
        )
    return out


def reduce_request(summaries: Sequence[str]) -> Request:
    return Request(reduce_messages(summaries), REDUCE_SCHEMA, [])


def reduce_messages(summaries: Sequence[str]) -> list[dict[str, str]]:
    parts = "\n\n".join(f"Part {i + 1}: {s}" for i, s in enumerate(summaries))
    return [
        {"role": "system", "content": REDUCE_INSTRUCTIONS},
        {"role": "user", "content": parts},
    ]


def json_object(answer: str) -> dict[str, object]:
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


def clean_text(value: object, limit: int) -> str:
    text = " ".join(str(value).split()) if isinstance(value, (str, int, float)) else ""
    return text[:limit]


_STAMP = re.compile(r"^\s*\[?(?:(\d+):)?(\d{1,2}):(\d{2})\]?\s*$")


def _seconds(value: object) -> float | None:
    m = _STAMP.match(str(value)) if isinstance(value, str) else None
    if m is None:
        return None
    h, mi, s = (int(x) if x else 0 for x in m.groups())
    return float(h * 3600 + mi * 60 + s)


# Words too common to tie an item to a line ("the" is in most of them).
_COMMON = frozenset(
    "the and for are but not you all any can had her was one our out has him his how its may "
    "new now see two who did get let say she too use will with this that have from they been "
    "were what when your about would there their which could should into also just then them "
    "than here some very".split()
)


def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"\w+", text.lower()) if len(w) > 2 and w not in _COMMON}


def _where(text: str, said_at: float | None, chunk: Sequence[Line]) -> Line:
    """The transcript line the item comes from: the one at its time stamp when that line shares
    a word with it, else the line sharing the most words (the first line if none does)."""
    words = content_words(text)
    if said_at is not None:
        at = [ln for ln in chunk if int(ln.start) <= said_at <= max(ln.end, ln.start + 1)]
        for ln in at:
            if words & content_words(ln.text):
                return ln
    return max(chunk, key=lambda ln: len(words & content_words(ln.text)))


def _items(raw: object, lines: Sequence[Line], owner: str) -> list[Item]:
    """Items of an answer, each placed at the line it comes from; one that shares no word with
    any of the lines is not from this transcript and is dropped."""
    out = []
    for entry in raw if isinstance(raw, list) else []:
        if not isinstance(entry, dict):
            continue
        text = clean_text(entry.get("text", ""), ITEM_CHARS)
        if not text:
            continue
        line = _where(text, _seconds(entry.get("said_at")), lines)
        if not content_words(text) & content_words(line.text):
            continue
        out.append(Item(text, owner, line.start, line.end))
    return out


def parse_answer(request: Request, answer: str) -> Recap:
    """One answer → a (partial) recap, every item checked against the request's lines."""
    data = json_object(answer)
    if request.speaker:
        return Recap("", actions=_items(data.get("actions"), request.lines, request.speaker))
    return Recap(
        _grounded(clean_text(data.get("summary", ""), SUMMARY_CHARS), request.lines),
        decisions=_items(data.get("decisions"), request.lines, ""),
    )


def _grounded(summary: str, lines: Sequence[Line]) -> str:
    """The summary's sentences that speak of this transcript (share a word with it); small
    models copy the worked example's sentences, which share none."""
    said = set().union(*(content_words(ln.text) for ln in lines)) if lines else set()
    sentences = re.split(r"(?<=[.!?])\s+", summary)
    return " ".join(s for s in sentences if content_words(s) & said).strip()


def require_content(recap: Recap) -> Recap:
    if not recap.summary and not recap.decisions and not recap.actions:
        raise RecapError("the model's answers hold no summary and no items from the transcript")
    return recap


def parse_summary(answer: str) -> str:
    summary = clean_text(json_object(answer).get("summary", ""), SUMMARY_CHARS)
    if not summary:
        raise RecapError("the model's combined summary is empty")
    return summary


def combine(parts: Sequence[Recap], summary: str | None = None) -> Recap:
    """The parts' items in time order, one item per owner and transcript line."""
    out = Recap(summary if summary is not None else " ".join(p.summary for p in parts).strip())
    for kind in ("decisions", "actions"):
        seen: set[tuple[str, float]] = set()
        items = sorted((i for p in parts for i in getattr(p, kind)), key=lambda i: i.start_s)
        for item in items:
            key = (item.owner.casefold(), item.start_s)
            if key not in seen and len(getattr(out, kind)) < MAX_ITEMS:
                seen.add(key)
                getattr(out, kind).append(item)
    return out


def _span(item: Item) -> str:
    return f"{stamp(item.start_s)}–{stamp(item.end_s)}"


def render(recap: Recap, where: str) -> str:
    """The room's message (markdown); `where` names the model and where it runs."""
    out = [f"🧾 **Recap** ({md_escape(where, 120)})"]
    if recap.summary:
        out.append(md_escape(recap.summary, SUMMARY_CHARS))
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
