"""People's text in the bot's notices: shown literally in HTML and in the plain body."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rtcbot.matrix.notices import TRUNCATED, _md_to_html, _strip_md, md_escape

EVIL = '<a href="https://evil.example">click</a> <b>bold</b> **x** [l](http://e) `c` &amp; @room'


def test_html_and_markdown_are_literal() -> None:
    markdown = f"📢 **Alice**: {md_escape(EVIL)}"
    html = _md_to_html(markdown)
    assert "<strong>Alice</strong>" in html  # the bot's own markup still works
    assert "<a " not in html and "<b>" not in html and "<code>" not in html
    assert "&lt;a href=&quot;https://evil.example&quot;&gt;click&lt;/a&gt;" in html
    assert "&amp;amp;" in html  # an entity people typed is shown as typed
    assert _strip_md(markdown) == f"📢 Alice: {EVIL}"


def test_raw_html_in_the_bots_own_markdown_is_dropped() -> None:
    html = _md_to_html("hi <img src=x onerror=alert(1)> [a](javascript:alert(1))")
    assert "<img" not in html and "javascript:" not in html


def test_long_text_is_cut_with_a_note_and_lines_are_joined() -> None:
    out = _strip_md(md_escape("word " * 100, limit=50))
    assert out.endswith(TRUNCATED) and len(out) <= 50 + len(TRUNCATED)
    assert "\n" not in _strip_md(md_escape("# heading\n- list\n> quote"))


@given(st.text(max_size=120))
def test_any_text_round_trips_through_the_plain_body(text: str) -> None:
    flat = " ".join(text.split())
    assert _strip_md(md_escape(text, limit=500)) == flat
    html = _md_to_html(f"x {md_escape(text, limit=500)}")
    assert "<a " not in html and "<script" not in html.lower()


def test_status_lines_show_members_state_literally() -> None:
    """`!call status`: `m.call.intent`, device id, application and slot come from members'
    state events (review L1): no link, no markup, no broken code span of theirs."""
    from rtcbot.calls.commands import call_heading, member_line

    link = "audio [Re-verify your session](https://evil.example)"
    markdown = "\n".join(
        [
            call_heading("x`<b>y</b>` [l](http://e)", "m.call#`**R**`", "5 s", 1, 1),
            member_line("Alice", "DEV` [d](http://e) `", link, "5 s", "session"),
        ]
    )
    html = _md_to_html(markdown)
    assert "<a " not in html and "<b>" not in html and "<code>" not in html, html
    assert "<strong>Session x" in html  # the bot's own markup still works
    plain = _strip_md(markdown)
    assert link in plain and "DEV` [d](http://e) `" in plain, plain
    assert "m.call#`**R**`" in plain, plain
