"""Secrets never reach a room, a log line or a traceback: the one place that scrubs text.

What is scrubbed: every secret the bot knows (`remember`: API secrets, its access token), and
anything shaped like one (JWTs, Matrix access tokens, recovery keys, `access_token=`/`token=`
query values).
Used by the log filter (on the output handlers, so child loggers, SDK loggers and tracebacks
are covered), by the notices the bot posts, and by error texts kept for diagnostics.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterable

REDACTED = "[redacted]"
MIN_SECRET_LEN = 6  # shorter "secrets" would scrub ordinary words
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# Synapse access/refresh tokens, MAS tokens (mat_, mar_), maubot (mct_), …
_MATRIX_TOKEN = re.compile(r"\b(?:syt|syr|syd|mat|mar|mct)_[A-Za-z0-9_-]{6,}")
_QUERY_TOKEN = re.compile(r"((?:access_token|token)=)[^&\s\"'<>]+", re.IGNORECASE)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
# Matrix recovery keys (secret storage / cross-signing): base58 of 0x8B01 + 32 bytes + parity,
# 48 characters starting "Es", usually shown in groups of four.
_B58 = "[1-9A-HJ-NP-Za-km-z]"
_RECOVERY_KEY = re.compile(rf"\bEs{_B58}{{2}}(?:[ \t]?{_B58}{{4}}){{11}}\b")

_known: set[str] = set()


def remember(*secrets: str) -> None:
    """Secrets of the running bot (from its config and client), scrubbed wherever they appear."""
    _known.update(s for s in secrets if s and len(s) >= MIN_SECRET_LEN)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every known or given secret, and anything token-shaped, replaced."""
    given = {s for s in secrets if s and len(s) >= MIN_SECRET_LEN} | _known
    # Longest first, so that a secret containing a shorter one is replaced whole.
    for secret in sorted(given, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
        escaped = html.escape(secret)
        if escaped != secret:
            text = text.replace(escaped, REDACTED)
    text = _JWT.sub(REDACTED, text)
    text = _MATRIX_TOKEN.sub(REDACTED, text)
    text = _RECOVERY_KEY.sub(REDACTED, text)
    text = _BEARER.sub(r"\1" + REDACTED, text)
    return _QUERY_TOKEN.sub(r"\1" + REDACTED, text)


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


class RedactingFilter(logging.Filter):
    """Scrubs a record's message and its traceback before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to logging's own error report
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()
# Loggers that may get handlers of their own (besides the root logger's).
_LOGGERS = ("", "livekit", "maubot", "mau", "aiohttp")


def install_log_filter() -> None:
    """Put the filter on every output handler (a logger's filters do not apply to records of
    its children, a handler's do), and on the loggers for handlers added later to them."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
