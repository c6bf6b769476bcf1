"""Name lookups for untrusted destinations, on threads of their own and with a time limit.

aiohttp's default resolver runs getaddrinfo() on the event loop's default executor, which
everything else in maubot shares (about six threads on two cores). A room member who names a
host whose DNS never answers would otherwise hold those threads for the system's full lookup
time (tens of seconds each) and stall unrelated work. Here a few threads of our own do the
lookups; a lookup that takes too long fails for its caller (its thread finishes in the
background, and while all are busy new lookups wait for one, then time out too).
"""

from __future__ import annotations

import asyncio
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult

_NUMERIC = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV


class LookupTimeout(OSError):
    """The name did not resolve in time (an OSError: aiohttp reports a connection error)."""


class BoundedResolver(AbstractResolver):
    def __init__(self, threads: int = 2, timeout: float = 3.0) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rtcbot-dns")
        self._timeout = timeout

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        lookup = loop.run_in_executor(
            self._pool, _getaddrinfo, host, port, family, socket.AI_ADDRCONFIG
        )
        try:
            infos = await asyncio.wait_for(lookup, self._timeout)
        except TimeoutError:
            raise LookupTimeout(f"name lookup of {host} took too long") from None
        return [_result(host, info) for info in infos if _usable(info)]

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _getaddrinfo(host: str, port: int, family: int, flags: int) -> list[Any]:
    return socket.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM, flags=flags)


def _usable(info: Any) -> bool:
    family, *_, address = info
    # IPv6 answers need a scope field; a Python without IPv6 gives none (aiohttp skips them).
    return family == socket.AF_INET or (family == socket.AF_INET6 and len(address) >= 4)


def _result(host: str, info: Any) -> ResolveResult:
    family, _, proto, _, address = info
    # A scope id (link-local IPv6) is kept in the text form; the address policy refuses
    # link-local anyway.
    text = (
        address[0] if family == socket.AF_INET or not address[3] else f"{address[0]}%{address[3]}"
    )
    return ResolveResult(
        hostname=host, host=text, port=address[1], family=family, proto=proto, flags=_NUMERIC
    )
