"""A transcript's lines: each speaker's words merged into lines in time order, and rendered
as the room's message (markdown + HTML), a plain-text file and WebVTT (pure; unit-tested).

Every speaker has a file of their own, so attribution is never guessed: a line is a run of
one speaker's words; it ends at a pause (≥ `pause_s`) or when it gets long. Lines of all
speakers are then sorted by their start, so an interjection during someone's long sentence
appears between that sentence's lines rather than cutting it word by word.

Every word and every name is people's text: escaped for the markdown (md_escape), the HTML
(html.escape) and WebVTT (its three entities); flattened to one line in the .txt.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from ..matrix.notices import NAME_LIMIT, md_escape
from .engine import Word

PAUSE_S = 1.5  # a pause this long starts a new line
LINE_CHARS = 200  # a line longer than this ends at the next word
SENTENCE_CHARS = 120  # ... or, past this, at the end of a sentence
LINE_LIMIT = 2000  # md_escape's cut: never reached by a line built here
# Matrix events are at most 64 KiB; body + formatted_body of the message stay under this.
MESSAGE_BUDGET = 40_000


@dataclass(frozen=True)
class Line:
    speaker: str  # display name
    start: float  # seconds from the start of the recording
    end: float
    text: str

    @property
    def words(self) -> int:
        return len(self.text.split())


def _flat(text: str) -> str:
    return " ".join(str(text).split())


def speaker_lines(
    speaker: str,
    words: Sequence[Word],
    pause_s: float = PAUSE_S,
    line_chars: int = LINE_CHARS,
) -> list[Line]:
    """One speaker's words (any order) as lines."""
    out: list[Line] = []
    cur: list[Word] = []
    length = 0

    def close() -> None:
        if cur:
            text = " ".join(_flat(w.text) for w in cur)
            out.append(Line(speaker, cur[0].start, max(w.end for w in cur), text))

    for w in sorted(words, key=lambda w: (w.start, w.end)):
        if not _flat(w.text):
            continue
        if cur:
            pause = w.start - max(c.end for c in cur)
            sentence_over = length >= SENTENCE_CHARS and cur[-1].text.rstrip()[-1:] in ".?!"
            if pause >= pause_s or length >= line_chars or sentence_over:
                close()
                cur, length = [], 0
        cur.append(w)
        length += len(_flat(w.text)) + 1
    close()
    return out


def merge_lines(
    speakers: Sequence[tuple[str, Sequence[Word]]],
    pause_s: float = PAUSE_S,
    line_chars: int = LINE_CHARS,
) -> list[Line]:
    """The lines of every (speaker, words), in time order (ties: the earlier-listed speaker)."""
    lines: list[tuple[float, int, Line]] = []
    for i, (name, words) in enumerate(speakers):
        lines.extend((ln.start, i, ln) for ln in speaker_lines(name, words, pause_s, line_chars))
    lines.sort(key=lambda t: (t[0], t[1]))
    return [ln for _, _, ln in lines]


# -- time stamps ---------------------------------------------------------------------------
def stamp(seconds: float, hours: bool = False) -> str:
    """`mm:ss`, or `h:mm:ss` when the transcript is an hour long or more."""
    s = max(0, int(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    if hours or h:
        return f"{h}:{m:02d}:{sec:02d}"
    return f"{m:02d}:{sec:02d}"


def needs_hours(lines: Sequence[Line]) -> bool:
    return any(ln.start >= 3600 for ln in lines)


def vtt_time(seconds: float) -> str:
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


# -- renderings ----------------------------------------------------------------------------
def render_text(lines: Sequence[Line], title: str = "") -> str:
    """The .txt file: `[mm:ss] Name: words`, one line each."""
    hours = needs_hours(lines)
    head = [_flat(title), ""] if title else []
    body = [f"[{stamp(ln.start, hours)}] {_flat(ln.speaker)}: {_flat(ln.text)}" for ln in lines]
    return "\n".join(head + body) + "\n"


def vtt_escape(text: str) -> str:
    """Cue text and voice names: `&`, `<`, `>` as entities (so `-->` and tags are literal),
    on one line (a blank line would end the cue)."""
    return _flat(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_vtt(lines: Sequence[Line]) -> str:
    """WebVTT: one cue per line, the speaker as a voice tag (`<v Name>`)."""
    out = ["WEBVTT", ""]
    for i, ln in enumerate(lines, 1):
        end = max(ln.end, ln.start + 0.5)
        out += [
            str(i),
            f"{vtt_time(ln.start)} --> {vtt_time(end)}",
            f"<v {vtt_escape(ln.speaker) or '?'}>{vtt_escape(ln.text)}",
            "",
        ]
    return "\n".join(out)


@dataclass(frozen=True)
class Message:
    markdown: str  # for the plain body (Notices strips the markup)
    html: str
    shown: int  # lines in the message; the rest are only in the attachments


def render_message(
    lines: Sequence[Line], header: str, budget: int = MESSAGE_BUDGET, more_note: str = ""
) -> Message:
    """The room's message: `header` (the bot's own markdown, one line) then the lines, as many
    as fit in `budget` characters of body + HTML; `more_note` says where the rest is."""
    hours = needs_hours(lines)
    md_lines = [header]
    html_lines = [_md_inline(header)]
    used = len(header) * 2
    shown = 0
    for ln in lines:
        t = stamp(ln.start, hours)
        name = _flat(ln.speaker)[:NAME_LIMIT]
        md = f"**[{t}] {md_escape(name, NAME_LIMIT)}:** {md_escape(ln.text, LINE_LIMIT)}"
        h = f"<b>[{t}] {html.escape(name)}:</b> {html.escape(_flat(ln.text))}"
        if used + len(md) + len(h) + 400 > budget:
            break
        md_lines.append(md)
        html_lines.append(h)
        used += len(md) + len(h) + 10
        shown += 1
    if shown < len(lines):
        note = f"… {len(lines) - shown} more lines{more_note}"
        md_lines.append(md_escape(note, 300))
        html_lines.append(f"<i>{html.escape(note)}</i>")
    return Message("\n".join(md_lines), "<br>\n".join(html_lines), shown)


def _md_inline(header: str) -> str:
    """The header is the bot's own text with `**bold**` at most: as HTML."""
    parts = header.split("**")
    return "".join(
        f"<b>{html.escape(p)}</b>" if i % 2 else html.escape(p) for i, p in enumerate(parts)
    )
