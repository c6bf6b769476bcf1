"""Where the call's LiveKit authorization service is: transports endpoint → well-known → config.

Element Call's order (matrixrtc-protocol.md §4.1): the homeserver's MSC4143 transports
endpoint first, then the legacy well-known `org.matrix.msc4143.rtc_foci`, then local config.
Answers are cached for a while; the members' own `foci_preferred` are read by the caller.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from mautrix.api import Method, Path
from mautrix.client import Client

TRANSPORTS_PATH = Path.unstable["org.matrix.msc4143"].rtc.transports
RTC_FOCI_KEY = "org.matrix.msc4143.rtc_foci"


@dataclass(frozen=True)
class Discovered:
    service_url: str | None
    source: str  # "transports endpoint" | "well-known" | "config" | "none"


def first_livekit_url(entries: Any) -> str | None:
    """The first livekit transport's service URL in a transports / rtc_foci list (pure)."""
    if not isinstance(entries, list):
        return None
    for entry in entries:
        if isinstance(entry, dict) and entry.get("type") == "livekit":
            url = entry.get("livekit_service_url")
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                return url.rstrip("/")
    return None


class TransportDiscovery:
    def __init__(self, client: Client, log: logging.Logger, ttl_s: float = 300) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.log = log
        self._cached: tuple[float, Discovered] | None = None

    def invalidate(self) -> None:
        self._cached = None

    async def discover(self, configured: str = "") -> Discovered:
        if configured:
            return Discovered(configured.rstrip("/"), "config")
        if self._cached and time.monotonic() - self._cached[0] < self.ttl_s:
            return self._cached[1]
        found = await self._lookup()
        self._cached = (time.monotonic(), found)
        return found

    async def _lookup(self) -> Discovered:
        try:
            resp = await self.client.api.request(Method.GET, TRANSPORTS_PATH)
            url = first_livekit_url(resp.get("rtc_transports"))
            if url:
                return Discovered(url, "transports endpoint")
        except Exception as e:
            self.log.debug("transports endpoint unavailable: %s", e)
        try:
            base = self.client.api.base_url
            async with self.client.api.session.get(base / ".well-known/matrix/client") as http:
                if http.status == 200:
                    data = await http.json(content_type=None)
                    url = first_livekit_url((data or {}).get(RTC_FOCI_KEY))
                    if url:
                        return Discovered(url, "well-known")
        except Exception as e:
            self.log.debug("well-known unavailable: %s", e)
        return Discovered(None, "none")
