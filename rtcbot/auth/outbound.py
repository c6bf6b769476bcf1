"""The HTTP client for requests that anonymous callers make the bot send.

`/sfu/get` and `/get_token` name the server that checks their OpenID token
(`matrix_server_name`), so anyone can make the bot open connections to a host of their
choice. Those requests (the userinfo check and the `.well-known/matrix/server` lookup) go
through this client only, never through the Matrix client's session (`ctx.http`), where a
server that accepts and never answers could hold every connection: sync, the bot's heartbeats
and everyone's delegated leaves would stall (review H1).

- its own `ClientSession`; at most `limit` requests at once to servers a caller named and,
  apart, at most `limit` to the allow-listed ones (the bot's own homeserver and the
  configured servers), so a server that never answers cannot delay the checks of the bot's
  own users; waiting for a slot counts towards the timeout;
- short timeouts;
- after DNS, no private, loopback, link-local or other non-global address, unless the
  host and port are allow-listed (the bot's own homeserver and the configured servers:
  `allowed`, as `host:port`; another port of the same host stays refused);
- a failure cache: a server name whose check could not be completed (unreachable, timeout,
  refused target) is not asked again for `failure_cache_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

DEFAULT_LIMIT = 8
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_FAILURE_CACHE_S = 10.0
MAX_FAILURE_ENTRIES = 4096


class OutboundRefused(aiohttp.ClientConnectionError):
    """The target is not one this client may contact, or no slot was free in time."""


def is_public(address: str) -> bool:
    """A globally routable unicast address (IPv4-mapped IPv6 judged by its IPv4 part)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def authority(host: str, port: int | None) -> str:
    return f"{host.lower().strip('[]')}:{port}"


def authority_of(url: str) -> str:
    """`host:port` of a URL (the scheme's default port if none), '' if it has no host."""
    u = URL(url)
    return authority(u.host, u.port) if u.host else ""


class GuardedConnector(aiohttp.TCPConnector):
    """Drops every non-public address a host resolves to (IP literals included), unless
    `host:port` is allow-listed; a host left with none is refused before any connection."""

    def __init__(self, allowed: Callable[[], frozenset[str]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._allowed = allowed

    # aiohttp's own hook between name resolution and connect (literals come through it too).
    async def _resolve_host(
        self, host: str, port: int, traces: Sequence[Any] | None = None
    ) -> list[ResolveResult]:
        results = await super()._resolve_host(host, port, traces)
        if authority(host, port) in self._allowed():
            return results
        public = [r for r in results if is_public(r["host"])]
        if not public:
            raise OutboundRefused(f"{host} has no public address")
        return public


class AnonymousOutbound:
    def __init__(
        self,
        allowed: Callable[[], Iterable[str]],
        *,
        limit: int = DEFAULT_LIMIT,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        failure_cache_s: float = DEFAULT_FAILURE_CACHE_S,
        clock: Callable[[], float] = time.monotonic,
        resolver: AbstractResolver | None = None,  # tests: names that resolve to loopback
    ) -> None:
        self._allowed = allowed
        self._resolver = resolver
        self.limit = limit
        self.timeout_s = timeout_s
        self.failure_cache_s = failure_cache_s
        self._clock = clock
        self._slots = asyncio.Semaphore(limit)  # for servers callers named
        self._trusted_slots = asyncio.Semaphore(limit)  # for the allow-listed ones
        self._session: aiohttp.ClientSession | None = None
        self._failed: dict[str, float] = {}  # server name -> until when

    def allowed(self) -> frozenset[str]:
        """The `host:port`s that may be private (lowercase, IPv6 without brackets)."""
        out = set()
        for entry in self._allowed():
            host, _, port = entry.rpartition(":")
            if host and port.isdigit():
                out.add(authority(host, int(port)))
        return frozenset(out)

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = GuardedConnector(
                self.allowed, limit=2 * self.limit, ttl_dns_cache=60, resolver=self._resolver
            )
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the failure cache, per server name -----------------------------------------------------
    def recently_failed(self, server_name: str) -> bool:
        until = self._failed.get(server_name)
        if until is None:
            return False
        if until <= self._clock():
            del self._failed[server_name]
            return False
        return True

    def failed(self, server_name: str) -> None:
        self._failed.pop(server_name, None)
        while len(self._failed) >= MAX_FAILURE_ENTRIES:
            del self._failed[next(iter(self._failed))]
        self._failed[server_name] = self._clock() + self.failure_cache_s

    # -- requests -------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def get(
        self,
        url: str,
        *,
        timeout: aiohttp.ClientTimeout | None = None,
        params: dict[str, str] | None = None,
        allow_redirects: bool = False,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """`session.get`, inside a slot; waiting for the slot counts towards the timeout."""
        total = self.timeout_s
        if timeout is not None and timeout.total is not None:
            total = min(total, timeout.total)
        started = self._clock()
        slots = self._trusted_slots if authority_of(url) in self.allowed() else self._slots
        try:
            await asyncio.wait_for(slots.acquire(), total)
        except TimeoutError:
            raise OutboundRefused("no free connection slot") from None
        try:
            left = max(0.1, total - (self._clock() - started))
            async with self.session().get(
                url,
                params=params,
                timeout=aiohttp.ClientTimeout(total=left, connect=min(left, 3.0)),
                allow_redirects=allow_redirects,
            ) as resp:
                yield resp
        finally:
            slots.release()
