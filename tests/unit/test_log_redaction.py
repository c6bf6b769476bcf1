"""Tokens written to the LiveKit SDK's logger never reach the log output."""

from __future__ import annotations

import logging

import pytest

from rtcbot.log_redaction import install, redact

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib3QifQ.c2lnbmF0dXJl"


def test_redact_patterns() -> None:
    text = f"invalid token: {JWT} url=/rtc?access_token=abc123&x=1 syt_cm9vdA_abcdefghijkl"
    out = redact(text)
    assert JWT not in out and "abc123" not in out and "syt_cm9vdA" not in out
    assert "access_token=[token]&x=1" in out


def test_livekit_logger_is_filtered(caplog: pytest.LogCaptureFixture) -> None:
    install()
    with caplog.at_level(logging.ERROR, logger="livekit"):
        logging.getLogger("livekit").error(
            "client error: 401 Unauthorized - invalid token: %s", JWT
        )
    assert caplog.records and JWT not in caplog.text and "[token]" in caplog.text
