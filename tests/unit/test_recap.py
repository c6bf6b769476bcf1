"""The recap's pure side: chunks that fit, answers parsed and checked against the transcript,
parts combined, the model's words escaped."""

from __future__ import annotations

import json

import pytest

from rtcbot.transcripts.lines import Line
from rtcbot.transcripts.recap import (
    UNASSIGNED,
    Item,
    Recap,
    RecapError,
    chunks,
    combine,
    line_text,
    map_messages,
    parse_part,
    parse_summary,
    render,
)

LINES = [
    Line("Alice Arden", 0.0, 4.0, "Good morning, let us plan the launch."),
    Line("Bob Brook", 5.0, 9.0, "I will write the press release by Friday."),
    Line("Alice Arden", 65.0, 70.0, "We decided to launch on the first of March."),
]


def test_chunks_fit_and_keep_order() -> None:
    for limit in (60, 100, 10_000):
        parts = chunks(LINES, limit)
        assert next(ln for part in parts for ln in part).speaker == "Alice Arden"
        for part in parts:
            assert sum(len(line_text(ln)) + 1 for ln in part) <= limit or len(part) == 1
            assert all(len(line_text(ln)) <= limit for ln in part)
    assert len(chunks(LINES, 10_000)) == 1
    assert len(chunks(LINES, 60)) == 3


def test_map_messages_carry_the_lines_with_times() -> None:
    user = map_messages(LINES)[1]["content"]
    assert "[01:05] Alice Arden: We decided" in user


def test_an_answer_in_prose_is_parsed_and_checked_against_the_transcript() -> None:
    answer = (
        "Sure! Here it is:\n```json\n"
        + json.dumps(
            {
                "summary": "The team planned the launch.",
                "decisions": [{"text": "Launch on the first of March", "said_at": "01:05"}],
                "actions": [
                    {
                        "owner": "bob",
                        "text": "Write the press release by Friday",
                        "said_at": "0:05",
                    },
                    {"owner": "Mallory", "text": "Steal the plans", "said_at": "99:00"},
                    {"owner": "Alice Arden", "text": ""},
                    "not an object",
                ],
            }
        )
        + "\n```"
    )
    recap = parse_part(answer, LINES)
    assert recap.summary == "The team planned the launch."
    assert recap.decisions == [Item("Launch on the first of March", "", 65.0, 70.0)]
    assert recap.actions[0] == Item("Write the press release by Friday", "Bob Brook", 5.0, 9.0)
    assert recap.actions[1].owner == UNASSIGNED  # not a speaker of this call
    assert len(recap.actions) == 2


@pytest.mark.parametrize("answer", ["no json here", "[1, 2]", '{"summary": ""}', "{"])
def test_an_unusable_answer_is_an_error(answer: str) -> None:
    with pytest.raises(RecapError):
        parse_part(answer, LINES)


def test_combine_keeps_each_item_once_and_the_reduced_summary() -> None:
    a = Recap(
        "Part one.",
        [Item("Launch in March", "", 65, 70)],
        [Item("Press release", "Bob Brook", 5, 9)],
    )
    b = Recap(
        "Part two.", [Item("launch in march", "", 65, 70)], [Item("Budget", "Alice Arden", 0, 4)]
    )
    both = combine([a, b])
    assert both.summary == "Part one. Part two."
    assert [d.text for d in both.decisions] == ["Launch in March"]
    assert [x.owner for x in both.actions] == ["Bob Brook", "Alice Arden"]
    assert combine([a, b], parse_summary('{"summary": "One."}')).summary == "One."


def test_render_escapes_the_models_words() -> None:
    recap = Recap(
        "Click [here](https://evil.example) <b>now</b>",
        [Item("**bold** decision", "", 65, 70)],
        [Item("`rm -rf`", "Bob Brook", 5, 9)],
    )
    text = render(recap, "by tiny, on the bot's own server")
    assert "[here](https" not in text and "\\[here\\]" in text
    assert "\\*\\*bold\\*\\*" in text and "(01:05–01:10)" in text
    assert "- **Bob Brook**: \\`rm \\-rf\\` (00:05–00:09)" in text
    empty = render(Recap("Nothing much."), "x")
    assert "No decisions or action items were found." in empty
