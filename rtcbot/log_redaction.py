"""Keep tokens out of every log line, including the ones third-party libraries write.

The LiveKit SDK's native errors quote the JWT ("401 Unauthorized - invalid token: eyJ…") and
URLs may carry access_token= parameters. Python applies a logger's filters only to records
logged on that very logger (not its children, such as the instance's `…rtcbot.calls`), so the
filter sits on the output handlers, where every record passes, tracebacks included.
"""

from __future__ import annotations

import logging
import re

_PATTERNS = (
    (re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]*"), "[token]"),
    (re.compile(r"(access_token=)[^&\s\"']+"), r"\1[token]"),
    (re.compile(r"\b(syt|syd|mct|mat)_[\w-]{10,}"), "[token]"),
)
# Loggers whose records may quote tokens, for handlers attached to them directly.
LOGGERS = ("livekit", "livekit.rtc", "livekit.api", "rtcbot")


def redact(text: str) -> str:
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_FILTER = RedactingFilter()


def install() -> None:
    handlers = list(logging.getLogger().handlers)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        handlers += logger.handlers
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    for handler in handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
