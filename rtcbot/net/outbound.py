"""Outbound HTTP that room state or anonymous callers trigger: a guarded client.

A URL that a room member advertises (another SFU's authorization service) or an anonymous
caller names (a server to verify an OpenID token at) must not turn the bot into a way into
the operator's network, nor starve the Matrix client (security review H1, M1). Such requests
go through `GuardedClient`, never through the Matrix client's session:

- `AddressPolicy`: https only; plain http, and private, loopback, link-local or otherwise
  non-global addresses, only for the hosts the operator configured (`local_hosts`).
- Every address a host resolves to is checked, and the connection goes to the checked
  addresses (the check is the connector's resolver, so a second DNS answer cannot swap in
  another address: no DNS rebinding). An IP literal is checked as it is.
- Its own aiohttp session with a small connection limit, no redirects, no proxy from the
  environment; a token bucket per host; a host that could not be reached is not tried
  again for `failure_ttl` seconds (negative cache).

A refusal raises `OutboundRefused`, whose `reason` is one of a few fixed words: callers tell
people a fixed sentence, never a server's text.

    client = GuardedClient(AddressPolicy(local_hosts=lambda: {"sfu.lan"}))
    async with client.post("https://sfu.example/sfu/get", json={...}) as resp: ...
    await client.close()
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

RefusalReason = Literal["scheme", "address", "rate", "recent_failure"]
Clock = Callable[[], float]


class OutboundRefused(OSError):
    """The request was not made (or not completed): `reason` says why, in one word.

    An OSError, so that aiohttp passes it through its connector as the cause of a connection
    error; GuardedClient raises it as itself."""

    def __init__(self, reason: RefusalReason, host: str) -> None:
        super().__init__(f"outbound request to {host} refused: {reason}")
        self.reason: RefusalReason = reason
        self.host = host


def _no_hosts() -> Collection[str]:
    return ()


@dataclass(frozen=True)
class AddressPolicy:
    """Where guarded requests may go. `local_hosts` (read at every request: config changes
    apply live) are host names or IP literals the operator configured; they may use http and
    resolve to non-global addresses."""

    local_hosts: Callable[[], Collection[str]] = _no_hosts

    def _local(self, host: str) -> bool:
        return host.lower().strip("[]") in {h.lower().strip("[]") for h in self.local_hosts()}

    def check_url(self, url: str) -> str:
        """The URL's host; raises OutboundRefused("scheme") for anything but https (http for
        a local host), or a URL with user info."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if not host or parts.username is not None or parts.password is not None:
            raise OutboundRefused("scheme", host or "?")
        if parts.scheme == "https" or (parts.scheme == "http" and self._local(host)):
            return host
        raise OutboundRefused("scheme", host)

    def allows_address(self, host: str, address: str) -> bool:
        """Whether `host` may be reached at `address` (one of its resolved addresses)."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip.is_global or self._local(host)


class _CheckingResolver(AbstractResolver):
    """Resolves as usual, then refuses the host if any of its addresses is not allowed."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if not found or not all(self._policy.allows_address(host, r["host"]) for r in found):
            raise OutboundRefused("address", host)
        return found

    async def close(self) -> None:
        await self._inner.close()


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class GuardedClient:
    """HTTP for untrusted destinations (see the module's doc). Create it in a running event
    loop's lifetime; `close()` it when done."""

    policy: AddressPolicy = field(default_factory=AddressPolicy)
    limit: int = 4  # connections at once, in all
    limit_per_host: int = 2
    rate_per_s: float = 0.5  # requests per host and second, after a burst of
    burst: int = 5
    failure_ttl: float = 30.0  # an unreachable host is not tried again for this long
    timeout: float = 10.0
    clock: Clock = time.monotonic
    _session: aiohttp.ClientSession | None = field(default=None, init=False, repr=False)
    _buckets: dict[str, _Bucket] = field(default_factory=dict, init=False, repr=False)
    _failed_until: dict[str, float] = field(default_factory=dict, init=False, repr=False)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.limit,
                limit_per_host=self.limit_per_host,
                resolver=_CheckingResolver(self.policy),
            )
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session

    def _admit(self, host: str) -> None:
        now = self.clock()
        if self._failed_until.get(host, 0.0) > now:
            raise OutboundRefused("recent_failure", host)
        self._failed_until = {h: t for h, t in self._failed_until.items() if t > now}
        bucket = self._buckets.setdefault(host, _Bucket(float(self.burst), now))
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate_per_s)
        bucket.at = now
        if bucket.tokens < 1.0:
            raise OutboundRefused("rate", host)
        bucket.tokens -= 1.0
        if len(self._buckets) > 1000:  # bounded: forget the hosts that are full again
            self._buckets = {
                h: b for h, b in self._buckets.items() if b.tokens < self.burst or h == host
            }

    def _check_literal(self, host: str) -> None:
        try:
            ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
        except ValueError:
            return  # a name: the resolver checks what it resolves to
        if not self.policy.allows_address(host, host.strip("[]")):
            raise OutboundRefused("address", host)

    @asynccontextmanager
    async def post(
        self,
        url: str,
        *,
        json: Any = None,
        timeout: aiohttp.ClientTimeout | None = None,
        allow_redirects: bool = False,  # accepted for ClientSession's signature; never followed
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST `json` to `url`, as aiohttp's `session.post` (without redirects). Raises
        OutboundRefused before any traffic when the policy, the rate or a recent failure says
        no; aiohttp's errors (and TimeoutError) otherwise."""
        host = self.policy.check_url(url)
        self._check_literal(host)
        self._admit(host)
        try:
            async with self._http().post(
                url,
                json=json,
                timeout=timeout or aiohttp.ClientTimeout(total=self.timeout),
                allow_redirects=False,
            ) as resp:
                yield resp
        except aiohttp.ClientConnectorError as e:
            self._failed_until[host] = self.clock() + self.failure_ttl
            if isinstance(e.os_error, OutboundRefused):
                raise e.os_error from None
            raise
        except TimeoutError:
            self._failed_until[host] = self.clock() + self.failure_ttl
            raise

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


__all__ = ["AddressPolicy", "GuardedClient", "OutboundRefused"]
