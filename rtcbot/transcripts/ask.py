"""`!call ask`'s pure side: the question and the passages the search found → what the model
is asked; its answer → the answer and the passages it used, checked (pure; unit-tested).

The model sees only the numbered passages (lines of this room's transcripts, found by the
room's own search), never the room's other lines; it must answer from them and name the
numbers it used. A number outside the list is ignored; the passages shown to the room are
the transcript's own lines, not the model's words about them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .lines import stamp
from .recap import RecapError, clean_text, json_object
from .search import Hit

ANSWER_CHARS = 600
INSTRUCTIONS = (
    "Answer the question using only the numbered passages from meeting transcripts. Each "
    "passage is `(number) date, speaker at mm:ss: words`. Answer with JSON: answer (one or two "
    "sentences; say that the passages do not tell if they do not), used (the numbers of the "
    "passages the answer comes from)."
)
EXAMPLE = (
    "Question: When is the party?\n(1) 2026-01-05, Ann at 00:04: The party is on Friday.\n"
    "(2) 2026-01-05, Tom at 00:09: I will bring the cake.",
    json.dumps({"answer": "The party is on Friday.", "used": [1]}),
)
SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {
        "answer": {"type": "string"},
        "used": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["answer", "used"],
}


@dataclass(frozen=True)
class Answer:
    text: str
    used: list[Hit]  # the passages the answer comes from, as the transcript has them


def passage(i: int, hit: Hit) -> str:
    day = time.strftime("%Y-%m-%d", time.gmtime(hit.started_ms / 1000))
    words = " ".join(hit.text.split())
    return f"({i}) {day}, {' '.join(hit.speaker.split())} at {stamp(hit.at_s)}: {words}"


def messages(question: str, hits: Sequence[Hit]) -> list[dict[str, str]]:
    numbered = "\n".join(passage(i + 1, h) for i, h in enumerate(hits))
    return [
        {"role": "system", "content": INSTRUCTIONS},
        {"role": "user", "content": EXAMPLE[0]},
        {"role": "assistant", "content": EXAMPLE[1]},
        {"role": "user", "content": f"Question: {' '.join(question.split())}\n{numbered}"},
    ]


def parse(answer: str, hits: Sequence[Hit]) -> Answer:
    data = json_object(answer)
    text = clean_text(data.get("answer", ""), ANSWER_CHARS)
    if not text:
        raise RecapError("the model's answer is empty")
    raw = data.get("used")
    numbers = [n for n in raw if isinstance(n, int)] if isinstance(raw, list) else []
    used = [hits[n - 1] for n in dict.fromkeys(numbers) if 1 <= n <= len(hits)]
    return Answer(text, used)
