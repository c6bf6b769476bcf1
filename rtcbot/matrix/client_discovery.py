"""Where a Matrix server's client-server API lives, for the delegated delayed leaves.

The URL comes from the server that vouched for the user (the OpenID token's
`matrix_server_name`), never from a URL in the request: a client's `delay_cs_api_url` would
let anyone make the service POST to any address (lk-jwt-service #181 → #188). Lookup order:

1. `auth_service.client_api_urls` (the config's override map);
2. the bot's own homeserver: the URL the bot itself talks to;
3. a cache (4 h for an answer, 1 min for a failure);
4. `https://<server name>/.well-known/matrix/client` → `m.homeserver.base_url`.

The well-known request is kept small, as in server_discovery.py: the name must be a valid
server name, the path is fixed, redirects are refused, the answer is capped at 16 KiB.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from .server_discovery import Getter, InvalidServerName, fetch_well_known, parse_server_name

WELL_KNOWN_CLIENT = "/.well-known/matrix/client"
_HTTP_URL = re.compile(r"https?://[^/\s?#]+(/[^\s?#]*)?")


class ClientApiUnresolvable(Exception):
    """No client-server API URL for this server name (the message says why)."""


@dataclass(frozen=True)
class _Cached:
    url: str | None  # None: the lookup failed
    expires: float


class ClientApiDiscovery:
    """`scheme` and `well_known_port` exist for tests on loopback (production: https, 443)."""

    def __init__(
        self,
        session: Getter,  # the delegated leaves' guarded client (net/outbound.py)
        overrides: Callable[[], dict[str, str]],
        own_server: str = "",
        own_url: Callable[[], str] = lambda: "",
        *,
        scheme: str = "https",
        well_known_port: int | None = None,
        timeout: float = 5.0,
        cache_seconds: float = 4 * 3600.0,
        failure_cache_seconds: float = 60.0,
        max_entries: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._overrides = overrides
        self._own_server = own_server
        self._own_url = own_url
        self._scheme = scheme
        self._well_known_port = well_known_port
        self._timeout = timeout
        self._cache_seconds = cache_seconds
        self._failure_cache_seconds = failure_cache_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._cache: dict[str, _Cached] = {}

    async def base_url(self, server_name: str) -> str:
        """The C-S API base URL (no trailing slash); raise ClientApiUnresolvable."""
        try:
            name = parse_server_name(server_name)
        except InvalidServerName as e:
            raise ClientApiUnresolvable(f"not a server name ({e})") from None
        override = self._overrides().get(server_name)
        if override:
            return override.rstrip("/")
        if server_name == self._own_server and self._own_url():
            return self._own_url().rstrip("/")
        now = self._clock()
        cached = self._cache.get(server_name)
        if cached is None or cached.expires <= now:
            url = await self._well_known(name.host if name.port is None else server_name)
            ttl = self._cache_seconds if url else self._failure_cache_seconds
            cached = _Cached(url, now + ttl)
            self._remember(server_name, cached)
        if cached.url is None:
            raise ClientApiUnresolvable(f"{server_name} has no usable {WELL_KNOWN_CLIENT}")
        return cached.url

    def _remember(self, key: str, entry: _Cached) -> None:
        self._cache.pop(key, None)
        while len(self._cache) >= self._max_entries:
            del self._cache[next(iter(self._cache))]  # the oldest entry
        self._cache[key] = entry

    async def _well_known(self, authority: str) -> str | None:
        if self._well_known_port and ":" not in authority:
            authority = f"{authority}:{self._well_known_port}"
        url = f"{self._scheme}://{authority}{WELL_KNOWN_CLIENT}"
        body = await fetch_well_known(self._session, url, self._timeout)
        homeserver = body.get("m.homeserver") if body is not None else None
        base = homeserver.get("base_url") if isinstance(homeserver, dict) else None
        if not isinstance(base, str) or not _HTTP_URL.fullmatch(base):
            return None
        return base.rstrip("/")
