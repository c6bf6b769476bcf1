"""The bot's LiveKit transport: config → transports endpoint → well-known.

Element Call's order (element-call `src/rtcSessionHelpers.ts`): the homeserver's MSC4143 transports
endpoint first, then the legacy well-known `org.matrix.msc4143.rtc_foci`; a configured
`livekit.service_url` wins. A transport names its SFU by `url` (Synapse ≥ 1.161: the token
then comes from the homeserver's `rtc/livekit/get_token`), by the deprecated
`livekit_service_url` (an authorization service, OpenID), or both. Answers are cached for a
while; the members' own `foci_preferred` are read by the caller.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from mautrix.api import Method, Path
from mautrix.client import Client

from ..rtc.member_fields import Invalid, Transport, parse_transport

TRANSPORTS_PATH = Path.unstable["org.matrix.msc4143"].rtc.transports
RTC_FOCI_KEY = "org.matrix.msc4143.rtc_foci"


@dataclass(frozen=True)
class Discovered:
    transport: Transport | None
    source: str  # "transports endpoint" | "well-known" | "config" | "none"

    @property
    def service_url(self) -> str | None:
        """The authorization service (OpenID flow), if the transport names one."""
        return self.transport.livekit_service_url if self.transport else None

    @property
    def sfu_url(self) -> str | None:
        """The SFU's WebSocket URL (homeserver token flow), if the transport names one."""
        return self.transport.url if self.transport else None


def service_transport(service_url: str) -> Transport:
    """A transport naming only an authorization service (`livekit.service_url`)."""
    entry = {"type": "livekit", "livekit_service_url": service_url.rstrip("/")}
    return parse_transport(entry, "config")


def first_livekit(entries: Any) -> Transport | None:
    """The first usable LiveKit transport in a transports / rtc_foci list (pure): one with
    a ws(s) `url` or an http(s) `livekit_service_url`; the unusable field of a transport is
    dropped."""
    if not isinstance(entries, list):
        return None
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("type") != "livekit":
            continue
        clean = dict(entry)
        service = clean.get("livekit_service_url")
        if isinstance(service, str) and service.startswith(("http://", "https://")):
            clean["livekit_service_url"] = service.rstrip("/")
        else:
            clean.pop("livekit_service_url", None)
        try:
            found = parse_transport(clean, "rtc_transports")
        except Invalid:
            continue
        if found.key:
            return found
    return None


def first_livekit_url(entries: Any) -> str | None:
    """The first livekit transport's service URL in a transports / rtc_foci list (pure)."""
    found = first_livekit(entries)
    return found.livekit_service_url if found else None


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
            return Discovered(service_transport(configured), "config")
        if self._cached and time.monotonic() - self._cached[0] < self.ttl_s:
            return self._cached[1]
        found = await self._lookup()
        self._cached = (time.monotonic(), found)
        return found

    async def _lookup(self) -> Discovered:
        try:
            resp = await self.client.api.request(Method.GET, TRANSPORTS_PATH)
            found = first_livekit(resp.get("rtc_transports"))
            if found:
                return Discovered(found, "transports endpoint")
        except Exception as e:
            self.log.debug("transports endpoint unavailable: %s", e)
        try:
            base = self.client.api.base_url
            async with self.client.api.session.get(base / ".well-known/matrix/client") as http:
                if http.status == 200:
                    data = await http.json(content_type=None)
                    found = first_livekit((data or {}).get(RTC_FOCI_KEY))
                    if found:
                        return Discovered(found, "well-known")
        except Exception as e:
            self.log.debug("well-known unavailable: %s", e)
        return Discovered(None, "none")
