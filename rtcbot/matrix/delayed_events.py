"""MSC4140 delayed events: capability, schedule, restart, cancel, send — and what errors mean.

mautrix has no helpers for these, so raw requests. Synapse answers differently by version:
1.163 says 400 ORG.MATRIX.MSC4140_DELAY_TOO_LARGE, 1.157 said 403 "exceeds the allowed
maximum", older servers 400 M_UNKNOWN with org.matrix.msc4140.errcode; all are handled.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientError
from mautrix.api import Method, Path
from mautrix.client import Client
from yarl import URL

UNSTABLE = Path.unstable["org.matrix.msc4140"]
DELAY_PARAM = "org.matrix.msc4140.delay"


class DelayedEventError(Exception):
    """Base: something went wrong with a delayed event."""


class DelayedEventsUnsupported(DelayedEventError):
    """The homeserver does not allow delayed events (disabled, refused or unknown endpoint)."""


class DelayTooLarge(DelayedEventError):
    def __init__(self, message: str, max_delay_ms: int | None) -> None:
        super().__init__(message)
        self.max_delay_ms = max_delay_ms


class DelayedEventNotFound(DelayedEventError):
    """Unknown id: it already fired, was cancelled, or someone overwrote the state."""


class RateLimited(DelayedEventError):
    def __init__(self, message: str, retry_after_ms: int | None) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class TransientError(DelayedEventError):
    """Network error, timeout or 5xx: worth retrying."""


class RequestRefused(DelayedEventError):
    """Any other 4xx (forbidden by power levels, bad request…)."""

    def __init__(self, message: str, status: int, errcode: str) -> None:
        super().__init__(message)
        self.status = status
        self.errcode = errcode


_MAX_IN_TEXT = re.compile(r"allowed maximum \((\d+)\s*ms\)")


def classify_error(status: int, body: dict[str, Any]) -> DelayedEventError:
    """Turn a homeserver error answer into one of the classes above (pure, unit-tested)."""
    errcode = str(body.get("errcode") or "")
    message = str(body.get("error") or f"HTTP {status}")
    legacy_code = str(body.get("org.matrix.msc4140.errcode") or "")
    if status == 429 or errcode == "M_LIMIT_EXCEEDED":
        retry = body.get("retry_after_ms")
        return RateLimited(message, retry if isinstance(retry, int) else None)
    if status >= 500:
        return TransientError(message)
    # MSC4140 (merged) answers 409 to a restart or send of an event already sent or
    # cancelled (Synapse#20229; 1.163.2 still says 404): gone either way, so the bot
    # rejoins and a delegated leave reports what happened instead of a refusal.
    if (errcode == "M_NOT_FOUND" and status == 404) or status == 409:
        return DelayedEventNotFound(message)
    if (
        errcode == "ORG.MATRIX.MSC4140_DELAY_TOO_LARGE"
        or legacy_code == "M_MAX_DELAY_EXCEEDED"
        or (status == 403 and "exceeds the allowed maximum" in message)
    ):
        max_delay = body.get("org.matrix.msc4140.max_delay")
        if not isinstance(max_delay, int):
            m = _MAX_IN_TEXT.search(message)
            max_delay = int(m.group(1)) if m else None
        return DelayTooLarge(message, max_delay)
    if (
        legacy_code == "M_MAX_DELAY_UNSUPPORTED"
        or errcode == "M_UNRECOGNIZED"
        or (status == 403 and "disallowed" in message.lower())
    ):
        return DelayedEventsUnsupported(message)
    return RequestRefused(message, status, errcode)


@dataclass(frozen=True)
class DelayedEventsSupport:
    advertised: bool  # /versions unstable_features["org.matrix.msc4140"]
    max_delay_ms: int | None  # capability; 0 = disabled

    @property
    def usable(self) -> bool:
        return self.advertised and self.max_delay_ms != 0


class DelayedEvents:
    """Thin client over the homeserver's delayed-event endpoints; raises the classes above."""

    def __init__(self, client: Client, request_timeout: float = 10) -> None:
        self.client = client
        self.request_timeout = request_timeout

    async def _call(
        self, method: Method, path: Any, content: Any = None, query: dict[str, str] | None = None
    ) -> Any:
        # Raw request on the bot's session: mautrix drops the body of "standard" errors, and
        # retry_after_ms / the legacy max-delay fields live there.
        api = self.client.api
        # The path builder already percent-encoded the room id: don't encode it twice.
        url = URL(str(api.base_url).rstrip("/") + "/" + str(path), encoded=True)
        headers = {"Authorization": f"Bearer {api.token}"}
        try:
            async with asyncio.timeout(self.request_timeout):
                async with api.session.request(
                    str(method), url, json=content, params=query, headers=headers
                ) as resp:
                    try:
                        body = await resp.json(content_type=None)
                    except ValueError:
                        body = None
                    if resp.status >= 300:
                        raise classify_error(resp.status, body if isinstance(body, dict) else {})
                    return body
        except (ClientError, TimeoutError, OSError) as e:
            raise TransientError(f"{type(e).__name__}: {e}") from e

    async def support(self) -> DelayedEventsSupport:
        versions = await self.client.api.request(Method.GET, Path.versions)
        advertised = bool((versions.get("unstable_features") or {}).get("org.matrix.msc4140"))
        caps = await self.client.api.request(Method.GET, Path.v3.capabilities)
        cap = (caps.get("capabilities") or {}).get("org.matrix.msc4140.delayed_events") or {}
        max_delay = cap.get("max_delay_ms")
        return DelayedEventsSupport(advertised, max_delay if isinstance(max_delay, int) else None)

    async def schedule_state(
        self, room_id: str, event_type: str, state_key: str, content: dict[str, Any], delay_ms: int
    ) -> str:
        path = Path.v3.rooms[room_id].state[event_type][state_key]
        resp = await self._call(Method.PUT, path, content, {DELAY_PARAM: str(delay_ms)})
        delay_id = resp.get("delay_id") if isinstance(resp, dict) else None
        if not isinstance(delay_id, str):
            raise DelayedEventsUnsupported("the homeserver ignored the delay parameter")
        return delay_id

    async def schedule_message(
        self,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
        delay_ms: int,
        query: dict[str, str],
    ) -> str:
        """A delayed room message (e.g. a sticky leave, MSC4354 in `query`): its delay id."""
        path = Path.v3.rooms[room_id].send[event_type][secrets.token_hex(12)]
        resp = await self._call(Method.PUT, path, content, {**query, DELAY_PARAM: str(delay_ms)})
        delay_id = resp.get("delay_id") if isinstance(resp, dict) else None
        if not isinstance(delay_id, str):
            raise DelayedEventsUnsupported("the homeserver ignored the delay parameter")
        return delay_id

    async def put_message(
        self, room_id: str, event_type: str, content: dict[str, Any], query: dict[str, str]
    ) -> str:
        """Send a room message now (e.g. a sticky membership); return its event id."""
        path = Path.v3.rooms[room_id].send[event_type][secrets.token_hex(12)]
        resp = await self._call(Method.PUT, path, content, query)
        return str(resp["event_id"])

    async def put_state(
        self, room_id: str, event_type: str, state_key: str, content: dict[str, Any]
    ) -> str:
        """Send a state event now (same error classes); return its event id."""
        path = Path.v3.rooms[room_id].state[event_type][state_key]
        resp = await self._call(Method.PUT, path, content)
        return str(resp["event_id"])

    async def get_event(self, room_id: str, event_id: str) -> dict[str, Any]:
        return dict(await self._call(Method.GET, Path.v3.rooms[room_id].event[event_id]))

    async def _action(self, delay_id: str, action: str) -> None:
        try:
            await self._call(Method.POST, UNSTABLE.delayed_events[delay_id][action], {})
        except DelayedEventsUnsupported:
            # Servers before the per-action paths only know the body form.
            await self._call(Method.POST, UNSTABLE.delayed_events[delay_id], {"action": action})

    async def restart(self, delay_id: str) -> None:
        await self._action(delay_id, "restart")

    async def cancel(self, delay_id: str) -> None:
        await self._action(delay_id, "cancel")

    async def send(self, delay_id: str) -> None:
        await self._action(delay_id, "send")

    async def list(self) -> list[dict[str, Any]]:
        resp = await self._call(Method.GET, UNSTABLE.delayed_events)
        return list(resp.get("delayed_events") or [])
