"""Outbound HTTP that room state or anonymous callers trigger: one guarded client.

A URL that a room member advertises (another SFU's authorization service), a server an
anonymous caller names (to verify an OpenID token at, or whose C-S API restarts a delegated
leave) must not turn the bot into a way into the operator's network, nor starve the Matrix
client (security review H1, M1). Such requests go through a `GuardedClient`, never through
the Matrix client's session (`ctx.http`):

- `AddressPolicy`: no private, loopback, link-local, multicast or otherwise non-global
  address, unless the operator configured the target: `local_hosts` (host names or IP
  literals, any port) or `local_authorities` (`host:port`, that port only). With
  `https_only` (room-triggered requests) plain http only for a local host. No user info.
- Every address a host resolves to is checked, IP literals included, in the connector
  between name resolution and connect: the connection goes to the checked addresses, so a
  second DNS answer cannot swap in another one (no DNS rebinding); one bad address refuses
  the host.
- Its own aiohttp session: no redirects, no proxy from the environment; at most `limit`
  requests at once to local targets and, apart, at most `limit` to the others (a server
  that never answers cannot delay the requests to configured ones); waiting for a slot
  counts towards the timeout.
- Optionally a token bucket per host (`rate_per_s`) and a failure cache: a host that could
  not be reached is not tried again for `failure_ttl` seconds (`remember_failed_hosts`);
  callers may also note failures under keys of their own (`failed` / `recently_failed`).

A refusal raises `OutboundRefused`, whose `reason` is one of a few fixed words: callers tell
people a fixed sentence, never a server's text. It is an aiohttp connection error (callers
catching `aiohttp.ClientError` see it) and an OSError (aiohttp passes it through its
connector as the cause).

    client = GuardedClient(AddressPolicy(local_hosts=lambda: {"sfu.lan"}))
    async with client.post("https://sfu.example/sfu/get", json={...}) as resp: ...
    await client.close()
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from ..rtc.rate_limit import KeyedLimiter
from .resolver import BoundedResolver

RefusalReason = Literal["scheme", "address", "rate", "recent_failure", "busy"]
Clock = Callable[[], float]
MAX_FAILURE_ENTRIES = 4096


class OutboundRefused(aiohttp.ClientConnectionError, OSError):
    """The request was not made (or not completed): `reason` says why, in one word."""

    def __init__(self, reason: RefusalReason, host: str) -> None:
        super().__init__(f"outbound request to {host} refused: {reason}")
        self.reason: RefusalReason = reason
        self.host = host


# IPv6 that Python's `is_global` (3.11) passes but that reaches no public host of its own:
# IPv4-compatible (::a.b.c.d, deprecated), local-use NAT64 (RFC 8215), site-local (deprecated).
_NOT_PUBLIC_V6 = tuple(ipaddress.IPv6Network(n) for n in ("::/96", "64:ff9b:1::/48", "fec0::/10"))
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # the well-known prefix: a.b.c.d via a gateway


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries to (mapped, 6to4, Teredo client, NAT64)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(address: str) -> bool:
    """A globally routable unicast address; an IPv6 one that carries an IPv4 address (mapped,
    6to4, Teredo, NAT64) is judged by that IPv4 address, so 64:ff9b::7f00:1 is loopback."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in net for net in _NOT_PUBLIC_V6):
            return False
        inner = _embedded_ipv4(ip)
        if inner is not None:
            return inner.is_global and not inner.is_multicast
    return ip.is_global and not ip.is_multicast


def _bare(host: str) -> str:
    return host.lower().strip("[]")


def authority(host: str, port: int | None) -> str:
    return f"{_bare(host)}:{port}"


def authority_of(url: str) -> str:
    """`host:port` of a URL (the scheme's default port if none), '' if it has no host."""
    u = URL(url)
    return authority(u.host, u.port) if u.host else ""


def _none() -> Collection[str]:
    return ()


@dataclass(frozen=True)
class AddressPolicy:
    """Where guarded requests may go. The callables are read at every request (config
    changes apply live)."""

    local_hosts: Callable[[], Collection[str]] = _none  # any port
    local_authorities: Callable[[], Iterable[str]] = _none  # `host:port`, as authority_of
    https_only: bool = True

    def authorities(self) -> frozenset[str]:
        out = set()
        for entry in self.local_authorities():
            host, _, port = entry.rpartition(":")
            if host and port.isdigit():
                out.add(authority(host, int(port)))
        return frozenset(out)

    def is_local(self, host: str, port: int | None = None) -> bool:
        """A target the operator configured: it may use http and non-global addresses."""
        if _bare(host) in {_bare(h) for h in self.local_hosts()}:
            return True
        return port is not None and authority(host, port) in self.authorities()

    def check_url(self, url: str) -> str:
        """The URL's host; raises OutboundRefused("scheme") for a URL without a host or with
        user info, and with `https_only` for anything but https (http for a local host)."""
        u = URL(url)
        host = _bare(u.host or "")
        if not host or u.user is not None or u.password is not None:
            raise OutboundRefused("scheme", host or "?")
        if u.scheme == "https" or (u.scheme == "http" and not self.https_only):
            return host
        if u.scheme == "http" and self.is_local(host, u.port):
            return host
        raise OutboundRefused("scheme", host)

    def allows_address(self, host: str, address: str, port: int | None = None) -> bool:
        """Whether `host` (at `port`) may be reached at `address`, one it resolved to."""
        return is_public(address) or self.is_local(host, port)


class GuardedConnector(aiohttp.TCPConnector):
    """Refuses a host if any address it resolves to (an IP literal: itself) is not allowed."""

    def __init__(self, policy: AddressPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._policy = policy

    # aiohttp's own hook between name resolution and connect (literals come through it too).
    async def _resolve_host(
        self, host: str, port: int, traces: Sequence[Any] | None = None
    ) -> list[ResolveResult]:
        found = await super()._resolve_host(host, port, traces)
        if not found or not all(self._policy.allows_address(host, r["host"], port) for r in found):
            raise OutboundRefused("address", host)
        return found


@dataclass
class GuardedClient:
    """HTTP for untrusted destinations (see the module's doc). Create it in a running event
    loop's lifetime; `close()` it when done."""

    policy: AddressPolicy = field(default_factory=AddressPolicy)
    limit: int = 4  # requests at once to local targets; as many apart to the others
    limit_per_host: int = 2  # connections per host (0: no limit)
    timeout: float = 10.0  # at most, waiting for a slot included
    connect_timeout: float = 3.0
    rate_per_s: float = 0.5  # requests per host and second (0: no limit), after a burst of
    burst: int = 5
    failure_ttl: float = 30.0  # how long a failure is remembered
    remember_failed_hosts: bool = True  # an unreachable host is not tried again meanwhile
    clock: Clock = time.monotonic
    resolver: AbstractResolver | None = None  # tests: names that resolve to loopback
    _session: aiohttp.ClientSession | None = field(default=None, init=False, repr=False)
    _own_resolver: BoundedResolver | None = field(default=None, init=False, repr=False)
    _rates: KeyedLimiter | None = field(default=None, init=False, repr=False)
    _failed: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _slots: dict[bool, asyncio.Semaphore] = field(default_factory=dict, init=False, repr=False)

    def session(self) -> aiohttp.ClientSession:
        """The guarded session itself: the address policy applies, the slots, rates and
        failure cache do not. For libraries that need a session (LiveKit's API client) and
        a target the operator configured."""
        if self._session is None or self._session.closed:
            if self.resolver is None:
                self._own_resolver = self._own_resolver or BoundedResolver()
            connector = GuardedConnector(
                self.policy,
                limit=2 * self.limit,
                limit_per_host=self.limit_per_host,
                resolver=self.resolver or self._own_resolver,
            )
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session

    # -- the failure cache ------------------------------------------------------------------
    def recently_failed(self, key: str) -> bool:
        until = self._failed.get(key)
        if until is None:
            return False
        if until <= self.clock():
            del self._failed[key]
            return False
        return True

    def failed(self, key: str) -> None:
        self._failed.pop(key, None)
        while len(self._failed) >= MAX_FAILURE_ENTRIES:
            del self._failed[next(iter(self._failed))]
        self._failed[key] = self.clock() + self.failure_ttl

    # -- requests ---------------------------------------------------------------------------
    def _admit(self, host: str) -> None:
        if self.remember_failed_hosts and self.recently_failed(host):
            raise OutboundRefused("recent_failure", host)
        if self.rate_per_s > 0:
            if self._rates is None:
                self._rates = KeyedLimiter(self.rate_per_s, self.burst, max_keys=1000)
            if self._rates.take(host, self.clock()) > 0:
                raise OutboundRefused("rate", host)

    @asynccontextmanager
    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """As aiohttp's `session.request`, never following redirects, inside a slot. Raises
        OutboundRefused before any traffic when the policy, the rate, a recent failure or
        the slots say no; aiohttp's errors (and TimeoutError) otherwise."""
        host = self.policy.check_url(url)
        self._admit(host)
        total = self.timeout
        if timeout is not None and timeout.total is not None:
            total = min(total, timeout.total)
        local = self.policy.is_local(host, URL(url).port)
        slots = self._slots.setdefault(local, asyncio.Semaphore(self.limit))
        started = self.clock()
        try:
            await asyncio.wait_for(slots.acquire(), total)
        except TimeoutError:
            raise OutboundRefused("busy", host) from None
        try:
            left = max(0.1, total - (self.clock() - started))
            async with self.session().request(
                method,
                url,
                json=json,
                params=params,
                timeout=aiohttp.ClientTimeout(total=left, connect=min(left, self.connect_timeout)),
                allow_redirects=False,
            ) as resp:
                yield resp
        except aiohttp.ClientConnectorError as e:
            self._note_failure(host)
            if isinstance(e.os_error, OutboundRefused):
                raise e.os_error from None
            raise
        except TimeoutError:
            self._note_failure(host)
            raise
        finally:
            slots.release()

    def _note_failure(self, host: str) -> None:
        if self.remember_failed_hosts:
            self.failed(host)

    def get(
        self,
        url: str,
        *,
        params: dict[str, str] | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
        allow_redirects: bool = False,  # for ClientSession's signature; never followed
    ) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        return self.request("GET", url, params=params, timeout=timeout)

    def post(
        self,
        url: str,
        *,
        json: Any = None,
        timeout: aiohttp.ClientTimeout | None = None,
        allow_redirects: bool = False,  # for ClientSession's signature; never followed
    ) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        return self.request("POST", url, json=json, timeout=timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._own_resolver is not None:
            await self._own_resolver.close()
            self._own_resolver = None


def anonymous_callers_client(
    configured: Callable[[], Iterable[str]],
    *,
    timeout: float,
    limit: int = 8,
    failure_ttl: float = 10.0,
    clock: Clock = time.monotonic,
    resolver: AbstractResolver | None = None,
) -> GuardedClient:
    """The client for what anonymous callers trigger (OpenID checks, well-known lookups,
    delegated leaves' C-S requests): private addresses only for the `host:port`s the
    operator configured (`configured`), any scheme (a homeserver may be plain http behind
    its proxy), no rate per host (the callers are limited per IP) and a failure cache the
    caller keys by server name."""
    return GuardedClient(
        AddressPolicy(local_authorities=configured, https_only=False),
        limit=limit,
        limit_per_host=0,
        timeout=timeout,
        rate_per_s=0.0,
        failure_ttl=failure_ttl,
        remember_failed_hosts=False,
        clock=clock,
        resolver=resolver,
    )


def sfu_api_client(livekit_url: Callable[[], str]) -> GuardedClient:
    """A session of its own for LiveKit's server API (`.session()`) where anonymous callers
    trigger the calls (CreateRoom, participant lookups): the configured SFU may be on a
    private address, nothing else is."""

    def sfu_host() -> Collection[str]:
        host = URL(livekit_url()).host if livekit_url() else None
        return (host,) if host else ()

    return GuardedClient(AddressPolicy(local_hosts=sfu_host), limit=4, limit_per_host=0)


__all__ = [
    "AddressPolicy",
    "GuardedClient",
    "OutboundRefused",
    "anonymous_callers_client",
    "authority_of",
    "is_public",
    "sfu_api_client",
]
