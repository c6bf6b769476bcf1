"""Restart or send someone else's delayed event by its id: the homeserver call of a delegated
delayed leave.

`POST {cs_api}/_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delay_id}/{action}`
with `{}` and no Authorization header: MSC4140 makes the delay id the capability (Synapse:
"token optional"). Servers before the per-action paths get the body form
`POST …/delayed_events/{delay_id}` `{"action": …}`. The answer becomes a `Result` of the pure
state machine. The delay id is path-escaped, and never appears in an exception text.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from ..net.outbound import GuardedClient
from ..rtc.delegated_leave import Result
from .delayed_events import (
    DelayedEventNotFound,
    DelayedEventsUnsupported,
    RateLimited,
    TransientError,
    classify_error,
)

DELAYED_EVENTS_PATH = "/_matrix/client/unstable/org.matrix.msc4140/delayed_events"
_MAX_BYTES = 16 * 1024


@dataclass(frozen=True)
class ActionAnswer:
    result: Result
    retry_after_s: float | None = None
    detail: str = ""  # for the log: status and errcode, never the delay id


def _retry_after(headers: Any, body: dict[str, Any]) -> float | None:
    ms = body.get("retry_after_ms")
    if isinstance(ms, int) and not isinstance(ms, bool) and ms >= 0:
        return ms / 1000
    header = headers.get("Retry-After", "") if headers is not None else ""
    if header.isdigit():
        return float(header)
    return None


async def _post(
    session: aiohttp.ClientSession | GuardedClient, url: str, body: dict[str, Any], timeout: float
) -> tuple[int, dict[str, Any], Any]:
    async with asyncio.timeout(timeout):
        async with session.post(url, json=body, allow_redirects=False) as resp:
            raw = await resp.content.read(_MAX_BYTES)
            try:
                parsed = json.loads(raw.decode("utf-8")) if raw else {}
            except (UnicodeDecodeError, ValueError, RecursionError):
                parsed = {}
            return resp.status, parsed if isinstance(parsed, dict) else {}, resp.headers


async def delayed_event_action(
    session: aiohttp.ClientSession | GuardedClient,
    base_url: str,
    delay_id: str,
    action: str,
    timeout: float = 5.0,
) -> ActionAnswer:
    """`restart` or `send` the delayed event `delay_id` at the C-S API `base_url`."""
    base = f"{base_url.rstrip('/')}{DELAYED_EVENTS_PATH}/{quote(delay_id, safe='')}"
    attempts: list[tuple[str, dict[str, Any]]] = [
        (f"{base}/{action}", {}),
        (base, {"action": action}),
    ]
    answer = ActionAnswer(Result.TRANSIENT, detail="not asked")
    for url, body in attempts:
        try:
            status, parsed, headers = await _post(session, url, body, timeout)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
            return ActionAnswer(Result.TRANSIENT, detail=type(e).__name__)
        if status < 300:
            return ActionAnswer(Result.OK, detail=str(status))
        err = classify_error(status, parsed)
        detail = f"{status} {parsed.get('errcode') or ''}".strip()
        if isinstance(err, DelayedEventNotFound):
            return ActionAnswer(Result.NOT_FOUND, detail=detail)
        if isinstance(err, RateLimited):
            return ActionAnswer(Result.RATE_LIMITED, _retry_after(headers, parsed), detail)
        if isinstance(err, TransientError):
            return ActionAnswer(Result.TRANSIENT, detail=detail)
        answer = ActionAnswer(Result.REFUSED, detail=detail)
        # Only an unknown endpoint (an older server) is worth the body form.
        if not (
            isinstance(err, DelayedEventsUnsupported) and parsed.get("errcode") == "M_UNRECOGNIZED"
        ):
            return answer
    return answer
