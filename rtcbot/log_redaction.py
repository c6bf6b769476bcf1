"""Keep tokens out of every log line, including the ones third-party libraries write.

The LiveKit SDK's native errors quote the JWT ("401 Unauthorized - invalid token: eyJ…") and
URLs may carry access_token= parameters; a filter on the handlers' loggers rewrites them.
"""

from __future__ import annotations

import logging
import re

_PATTERNS = (
    (re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]*"), "[token]"),
    (re.compile(r"(access_token=)[^&\s\"']+"), r"\1[token]"),
    (re.compile(r"\b(syt|syd|mct|mat)_[\w-]{10,}"), "[token]"),
)
# Loggers whose records may quote tokens; filters attach to loggers, not their children.
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
        return True


_FILTER = RedactingFilter()


def install() -> None:
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
