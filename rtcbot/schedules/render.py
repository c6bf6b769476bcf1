"""Markdown and HTML of the schedule messages, with people's text (titles) escaped."""

from __future__ import annotations

import html

from ..matrix.notices import _md_to_html


def render(template: str, **values: str) -> tuple[str, str]:
    """Markdown (for the plain body) and HTML of `template`; `values` are people's text
    (titles), inserted verbatim in the markdown and escaped in the HTML."""
    markdown = template.format(**values)
    marks = {key: f"RTCBOTVALUE{i}X" for i, key in enumerate(values)}
    html_body = _md_to_html(template.format(**marks))
    for key, mark in marks.items():
        html_body = html_body.replace(mark, html.escape(values[key]))
    return markdown, html_body


def braces(text: str) -> str:
    """Text placed into a `render` template as markdown (ours, not people's)."""
    return text.replace("{", "{{").replace("}", "}}")
