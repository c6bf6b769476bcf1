"""The transcript's lines: merging per-speaker words, time stamps, and the three renderings
(the room's message, .txt, WebVTT) with people's text escaped in each."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from rtcbot.transcripts.engine import Word
from rtcbot.transcripts.lines import (
    Line,
    merge_lines,
    render_message,
    render_text,
    render_vtt,
    speaker_lines,
    stamp,
    vtt_escape,
    vtt_time,
)


def words(start: float, text: str, step: float = 0.4) -> list[Word]:
    return [
        Word(round(start + i * step, 2), round(start + i * step + step * 0.9, 2), t)
        for i, t in enumerate(text.split())
    ]


def test_turns_become_lines_in_time_order() -> None:
    alice = words(1.0, "good morning everyone") + words(9.0, "the customer called")
    bob = words(4.0, "we should finish the website")
    lines = merge_lines([("Alice", alice), ("Bob", bob)])
    assert [(ln.speaker, ln.text) for ln in lines] == [
        ("Alice", "good morning everyone"),
        ("Bob", "we should finish the website"),
        ("Alice", "the customer called"),
    ]
    assert lines[0].start == 1.0 and lines[1].start == 4.0
    assert lines[0].end == words(1.0, "good morning everyone")[-1].end


def test_a_pause_starts_a_new_line_a_short_gap_does_not() -> None:
    w = words(0.0, "one two") + words(0.8 + 1.0, "three") + words(3.0 + 1.6, "four")
    lines = speaker_lines("A", w)
    assert [ln.text for ln in lines] == ["one two three", "four"]


def test_long_speech_is_cut_into_lines() -> None:
    text = " ".join(["word"] * 200)
    lines = speaker_lines("A", words(0.0, text, step=0.3))
    assert len(lines) > 1
    assert all(len(ln.text) <= 205 for ln in lines)
    assert sum(ln.words for ln in lines) == 200


def test_a_sentence_end_past_the_soft_limit_ends_the_line() -> None:
    first = (
        "this sentence is long enough to pass the soft limit of a line in the transcript "
        "because it goes on and on about nothing much at all."
    )
    assert 120 < len(first) < 200
    w = words(0.0, first + " " + first, step=0.2)
    lines = speaker_lines("A", w)
    assert lines[0].text == first


def test_stamps() -> None:
    assert stamp(0) == "00:00"
    assert stamp(65.9) == "01:05"
    assert stamp(3599) == "59:59"
    assert stamp(3600) == "1:00:00"
    assert stamp(5, hours=True) == "0:00:05"
    assert vtt_time(3723.4567) == "01:02:03.457"


def test_hours_in_every_stamp_once_the_transcript_is_long() -> None:
    lines = [Line("A", 5, 6, "early"), Line("B", 3700, 3701, "late")]
    text = render_text(lines)
    assert "[0:00:05] A: early" in text and "[1:01:40] B: late" in text


def test_text_file_is_one_line_per_line_with_names_flattened() -> None:
    lines = [Line("Eve\nSmith", 1, 2, "hi\n\nthere"), Line("Bob", 3, 4, "yes")]
    out = render_text(lines, title="Transcript of x")
    assert out.splitlines() == [
        "Transcript of x",
        "",
        "[00:01] Eve Smith: hi there",
        "[00:03] Bob: yes",
    ]


def test_vtt_cues_with_voice_tags_and_escaped_names() -> None:
    lines = [
        Line("A <b>&</b> --> B", 1.0, 1.0, "x --> y <i>z</i> & more\n\nstill"),
        Line("Bob", 2.5, 4.0, "ok"),
    ]
    vtt = render_vtt(lines)
    assert vtt.startswith("WEBVTT\n\n")
    cues = vtt.split("\n\n")[1:]
    cues = [c for c in cues if c.strip()]
    assert len(cues) == 2
    ident, timing, text = cues[0].split("\n")
    assert ident == "1"
    assert timing == "00:00:01.000 --> 00:00:01.500"  # a cue is never empty
    assert (
        text
        == "<v A &lt;b&gt;&amp;&lt;/b&gt; --&gt; B>x --&gt; y &lt;i&gt;z&lt;/i&gt; &amp; more still"
    )
    assert cues[1].split("\n")[2] == "<v Bob>ok"
    # Only the one "-->" per cue: the timing line.
    assert all(c.count("-->") == 1 for c in cues)


@given(st.text(max_size=60))
def test_vtt_escape_leaves_no_markup(text: str) -> None:
    out = vtt_escape(text)
    assert "<" not in out and ">" not in out and "\n" not in out
    assert re.sub(r"&(amp|lt|gt);", "", out).count("&") == 0


def test_message_escapes_words_and_names() -> None:
    lines = [Line("*Mallory* <img src=x>", 1, 2, "**bold** [link](http://evil) <script>")]
    msg = render_message(lines, "📝 **Transcript** (1 speaker, 3 words)")
    assert "<script>" not in msg.html and "<img" not in msg.html
    assert "&lt;script&gt;" in msg.html
    assert "<b>[00:01] *Mallory* &lt;img src=x&gt;:</b>" in msg.html
    assert msg.html.startswith("📝 <b>Transcript</b> (1 speaker, 3 words)")
    # markdown: every markup character of people's text escaped
    assert r"\*\*bold\*\* \[link\]\(http\:\/\/evil\) \<script\>" in msg.markdown
    assert r"\*Mallory\* \<img src\=x\>" in msg.markdown
    assert msg.shown == 1


def test_a_long_transcript_is_cut_to_the_message_budget() -> None:
    lines = [Line("Speaker", i * 3.0, i * 3.0 + 2, "some words " * 15) for i in range(2000)]
    msg = render_message(lines, "📝 **Transcript**", more_note=": the attached files have all")
    assert 0 < msg.shown < 2000
    assert len(msg.markdown.encode()) + len(msg.html.encode()) < 45_000
    assert f"… {2000 - msg.shown} more lines\\: the attached files have all" in msg.markdown
    assert msg.html.endswith(
        f"<i>… {2000 - msg.shown} more lines: the attached files have all</i>"
    )


def test_empty_words_are_skipped() -> None:
    assert speaker_lines("A", [Word(0, 1, "  ")]) == []
    assert merge_lines([("A", []), ("B", [])]) == []
