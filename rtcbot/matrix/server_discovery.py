"""Where a Matrix server's federation API lives: the server-server discovery rules.

The authorization service checks OpenID tokens at `…/_matrix/federation/v1/openid/userinfo`
of the server that issued them. Which host and port that is follows the spec's "Resolving
server names" (https://spec.matrix.org/latest/server-server-api/#resolving-server-names):

1. an IP literal: that address, with its port or 8448;
2. a hostname with an explicit port: that host and port;
3. `https://<hostname>/.well-known/matrix/server` naming `{"m.server": "<host>[:<port>]"}`:
   the delegated host, with its port or 8448;
4. otherwise the hostname with port 8448.

SRV records (`_matrix-fed._tcp`, `_matrix._tcp`, steps 3.3/3.4 and 4/5 of the spec) are
skipped: aiohttp has no SRV lookup and a new DNS dependency is not worth it for a rare setup.
A server that relies on SRV alone needs an entry in `auth_service.homeserver_urls`.

Anyone may make us look a server name up, so the requests are kept small (SSRF, review §5):
the name must match the server-name grammar, the path is fixed, redirects are not followed
(the spec allows them for the well-known; we refuse them), the answer is capped at 16 KiB and
every request has a timeout. The authorization service hands in its own client for anonymous
callers (net/outbound.py): its own small pool, and no private addresses unless configured.
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

DEFAULT_FEDERATION_PORT = 8448
WELL_KNOWN_PATH = "/.well-known/matrix/server"
_MAX_WELL_KNOWN_BYTES = 16 * 1024
_DNS_NAME = re.compile(r"[A-Za-z0-9.-]{1,255}")
_PORT = re.compile(r"[0-9]{1,5}")


class HttpGetter(Protocol):
    """What the lookups need of an HTTP client (net/outbound.py's GuardedClient)."""

    def get(
        self, url: str, *, timeout: aiohttp.ClientTimeout, allow_redirects: bool = False
    ) -> AbstractAsyncContextManager[aiohttp.ClientResponse]: ...


Getter = aiohttp.ClientSession | HttpGetter


class InvalidServerName(ValueError):
    """The text is not a Matrix server name (hostname, IPv4 or [IPv6], optional port)."""


@dataclass(frozen=True)
class ServerName:
    host: str  # a DNS name, an IPv4 address or a bracketed IPv6 address
    port: int | None
    is_ip: bool


def parse_server_name(text: str) -> ServerName:
    """Split and validate a server name; raise InvalidServerName."""
    if not text or len(text) > 261:  # 255 for the host, ":" and five digits
        raise InvalidServerName("empty or too long")
    host, port_text = text, None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise InvalidServerName("unclosed IPv6 literal")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise InvalidServerName("text after the IPv6 literal")
            port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise InvalidServerName("bad IPv6 literal") from None
        is_ip = True
    else:
        if text.count(":") == 1:
            host, port_text = text.split(":")
        if not _DNS_NAME.fullmatch(host):
            raise InvalidServerName("bad hostname")
        try:
            ipaddress.IPv4Address(host)
            is_ip = True
        except ValueError:
            is_ip = False
    port = None
    if port_text is not None:
        if not _PORT.fullmatch(port_text) or not 0 < int(port_text) < 65536:
            raise InvalidServerName("bad port")
        port = int(port_text)
    return ServerName(host=host, port=port, is_ip=is_ip)


@dataclass(frozen=True)
class _Cached:
    base_url: str
    expires: float


class FederationDiscovery:
    """Finds (and caches) the federation base URL of a server name.

    `scheme`, `well_known_port` and `default_port` exist for tests on loopback; production
    uses https, port 443 for the well-known and 8448 as the federation default.
    """

    def __init__(
        self,
        session: Getter,
        *,
        scheme: str = "https",
        well_known_port: int | None = None,
        default_port: int = DEFAULT_FEDERATION_PORT,
        timeout: float = 5.0,
        cache_seconds: float = 3600.0,
        failure_cache_seconds: float = 300.0,
        max_entries: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._scheme = scheme
        self._well_known_port = well_known_port
        self._default_port = default_port
        self._timeout = timeout
        self._cache_seconds = cache_seconds
        self._failure_cache_seconds = failure_cache_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._cache: dict[str, _Cached] = {}

    async def base_url(self, server_name: str) -> str:
        """The federation base URL (no trailing slash); raise InvalidServerName."""
        name = parse_server_name(server_name)
        if name.is_ip or name.port is not None:
            return self._url(name.host, name.port)  # steps 1 and 2: no lookup at all
        now = self._clock()
        cached = self._cache.get(server_name)
        if cached is not None and cached.expires > now:
            return cached.base_url
        delegated = await self._well_known(name.host)
        if delegated is None:
            url, ttl = self._url(name.host, None), self._failure_cache_seconds  # step 4
        else:
            url, ttl = self._url(delegated.host, delegated.port), self._cache_seconds  # step 3
        self._remember(server_name, _Cached(url, now + ttl))
        return url

    def _url(self, host: str, port: int | None) -> str:
        return f"{self._scheme}://{host}:{port or self._default_port}"

    def _remember(self, key: str, entry: _Cached) -> None:
        self._cache.pop(key, None)
        while len(self._cache) >= self._max_entries:
            del self._cache[next(iter(self._cache))]  # the oldest entry
        self._cache[key] = entry

    async def _well_known(self, host: str) -> ServerName | None:
        port = f":{self._well_known_port}" if self._well_known_port else ""
        url = f"{self._scheme}://{host}{port}{WELL_KNOWN_PATH}"
        body = await fetch_well_known(self._session, url, self._timeout)
        delegated = body.get("m.server") if body is not None else None
        if not isinstance(delegated, str):
            return None
        try:
            return parse_server_name(delegated)
        except InvalidServerName:
            return None


async def fetch_well_known(session: Getter, url: str, timeout: float) -> dict[str, Any] | None:
    """A `.well-known` JSON object, or None: not 200, a redirect, over 16 KiB, not a JSON
    object, or unreachable (the caller's fallback applies then)."""
    try:
        async with session.get(
            url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
        ) as resp:
            if resp.status != 200:
                return None
            raw = await resp.content.read(_MAX_WELL_KNOWN_BYTES + 1)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    if len(raw) > _MAX_WELL_KNOWN_BYTES:
        return None
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None
