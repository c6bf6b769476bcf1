"""Secrets never reach the log output: child loggers, SDK loggers and tracebacks included."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from rtcbot.redaction import REDACTED, install_log_filter, redact, remember

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib3QifQ.c2lnbmF0dXJl"
SECRETS = (
    JWT,
    "syt_cm9vdA_abcdefghijkl",
    "mct_ZZZZZZZZZZZZZZZZZZZZ",
    "mar_0123456789abcdef",
)


def test_redact_patterns() -> None:
    text = f"invalid token: {JWT} url=/rtc?access_token=abc123&x=1 syt_cm9vdA_abcdefghijkl"
    out = redact(text)
    assert JWT not in out and "abc123" not in out and "syt_cm9vdA" not in out
    assert f"access_token={REDACTED}&x=1" in out
    assert redact("Authorization: Bearer abcdefgh12345678") == f"Authorization: Bearer {REDACTED}"
    assert "mct_" not in redact("maubot token mct_ZZZZZZZZZZZZZZZZZZZZ")
    assert "mar_" not in redact("refresh mar_0123456789abcdef")


def test_remembered_and_given_secrets() -> None:
    remember("the-api-secret-xyz")
    assert "the-api-secret-xyz" not in redact("secret=the-api-secret-xyz")
    assert redact("pw hunter2hunter2", ["hunter2hunter2"]) == f"pw {REDACTED}"
    assert redact("short abc", ["abc"]) == "short abc"  # too short to be a secret


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    """A real output handler on the root logger, as maubot's logging config sets up."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    old = root.level
    root.setLevel(logging.DEBUG)
    install_log_filter()
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


@pytest.mark.parametrize(
    "name",
    ["livekit", "livekit.rtc.room", "maubot.instance.rtcbot.calls", "rtcbot.calls.manager", "x"],
)
def test_every_logger_is_filtered(output: io.StringIO, name: str) -> None:
    for secret in SECRETS:
        logging.getLogger(name).error("client error: 401 invalid token: %s", secret)
    text = output.getvalue()
    assert text.count(REDACTED) == len(SECRETS), text
    assert not any(s in text for s in SECRETS), text


def test_tracebacks_are_filtered(output: io.StringIO) -> None:
    try:
        raise RuntimeError(f"connect failed: {JWT}")
    except RuntimeError:
        logging.getLogger("maubot.instance.rtcbot.media").exception("join failed")
    text = output.getvalue()
    assert "Traceback" in text and "RuntimeError" in text
    assert JWT not in text and REDACTED in text
