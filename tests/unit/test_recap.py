"""The recap's pure side: chunks that fit, the questions asked, answers parsed and checked
against the transcript, parts combined, the model's words escaped."""

from __future__ import annotations

import json

import pytest

from rtcbot.transcripts import ask
from rtcbot.transcripts.lines import Line
from rtcbot.transcripts.recap import (
    ACTIONS_SCHEMA,
    SUMMARY_SCHEMA,
    Item,
    Recap,
    RecapError,
    chunks,
    combine,
    line_text,
    parse_answer,
    parse_summary,
    part_requests,
    render,
    require_content,
)
from rtcbot.transcripts.search import Hit

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


def test_a_part_asks_for_the_summary_then_each_speakers_own_tasks() -> None:
    requests = part_requests(LINES)
    assert [r.speaker for r in requests] == ["", "Alice Arden", "Bob Brook"]
    assert "[01:05] Alice Arden: We decided" in requests[0].messages[-1]["content"]
    assert requests[0].schema is SUMMARY_SCHEMA and requests[1].schema is ACTIONS_SCHEMA
    bobs = requests[2].messages[-1]["content"]
    assert bobs == "[00:05] I will write the press release by Friday."  # his lines only
    assert [ln.speaker for ln in requests[1].lines] == ["Alice Arden", "Alice Arden"]


def test_answers_are_parsed_and_checked_against_the_transcript() -> None:
    summary, _alice, bob = part_requests(LINES)
    body = {
        "summary": "The team planned the launch.",
        "decisions": [
            {"text": "Launch on the first of March", "said_at": "01:05"},
            {"text": "Buy a yacht", "said_at": "00:00"},  # in no line: dropped
            "not an object",
            {"text": ""},
        ],
    }
    part = parse_answer(summary, "Sure! Here it is:\n```json\n" + json.dumps(body) + "\n```")
    assert part.summary == "The team planned the launch."
    assert part.decisions == [Item("Launch on the first of March", "", 65.0, 70.0)]
    said = '{"actions": [{"text": "write the press release", "said_at": "9:99"}]}'
    assert parse_answer(bob, said).actions == [
        Item("write the press release", "Bob Brook", 5.0, 9.0)
    ]
    assert parse_answer(bob, '{"actions": []}').actions == []


@pytest.mark.parametrize("answer", ["no json here", "[1, 2]", "{"])
def test_an_unusable_answer_is_an_error(answer: str) -> None:
    with pytest.raises(RecapError):
        parse_answer(part_requests(LINES)[0], answer)


def test_a_summary_keeps_only_sentences_about_this_transcript() -> None:
    copied = '{"summary": "The meeting moves to Tuesday. Bob writes the press release.", "decisions": []}'
    part = parse_answer(part_requests(LINES)[0], copied)
    assert part.summary == "Bob writes the press release."
    nothing = parse_answer(part_requests(LINES)[0], '{"summary": "", "decisions": []}')
    with pytest.raises(RecapError):
        require_content(combine([nothing]))


def test_combine_keeps_one_item_per_owner_and_line_in_time_order() -> None:
    a = Recap(
        "Part one.",
        [Item("Launch in March", "", 65, 70)],
        [Item("Press release", "Bob Brook", 5, 9)],
    )
    b = Recap(
        "Part two.",
        [Item("launch in march", "", 65, 70)],
        [Item("Budget", "Alice Arden", 0, 4)],
    )
    both = combine([a, b])
    assert both.summary == "Part one. Part two."
    assert [d.text for d in both.decisions] == ["Launch in March"]
    assert [x.owner for x in both.actions] == ["Alice Arden", "Bob Brook"]
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
    assert "No decisions or action items were found." in render(Recap("Nothing much."), "x")


def test_ask_numbers_the_passages_and_keeps_only_cited_ones_that_exist() -> None:
    hits = [
        Hit("$r", "$m", 0, 5.0, "Bob Brook", "I will write the press release by Friday."),
        Hit("$r", "$m", 0, 65.0, "Alice Arden", "We decided to launch in March."),
    ]
    asked = ask.messages("Who writes the press release?", hits)[-1]["content"]
    assert asked.startswith("Question: Who writes the press release?\n(1) 1970-01-01, Bob Brook")
    answer = ask.parse('{"answer": "Bob does.", "used": [1, 1, 7, "2"]}', hits)
    assert answer.text == "Bob does." and answer.used == [hits[0]]
    with pytest.raises(RecapError):
        ask.parse('{"answer": "", "used": [1]}', hits)
