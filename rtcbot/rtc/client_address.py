"""Which client a request comes from, as a rate-limit key (review finding 3).

The key is an address, not the string a caller or proxy wrote: an IPv4-mapped IPv6 address
counts as its IPv4, and an IPv6 client by its /64 (one host usually holds a whole /64, so a key
per address would give it 2^64 buckets). Behind trusted proxies (addresses or CIDRs) the last
hop they did not append counts; a hop that is no IP address falls back to the peer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=16)
def proxy_networks(proxies: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """The configured proxies as networks (config.py has checked that each one parses)."""
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def parse_ip(text: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def key_of(ip: IPAddress) -> str:
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _trusted(ip: IPAddress, proxies: Iterable[IPNetwork]) -> bool:
    return any(ip in net for net in proxies)


def client_key(peer: str, forwarded_for: str, proxies: Sequence[IPNetwork]) -> str:
    """The rate-limit key of a request from `peer` with this X-Forwarded-For header."""
    peer_ip = parse_ip(peer)
    if peer_ip is None:
        return peer[:64]  # not an IP socket (a unix socket): one key for all of it
    if not _trusted(peer_ip, proxies):
        return key_of(peer_ip)
    hops = [h for h in (h.strip() for h in forwarded_for.split(",")) if h]
    for hop in reversed(hops):
        hop_ip = parse_ip(hop)
        if hop_ip is None:
            return key_of(peer_ip)  # "unknown", a name, garbage: the proxy's own bucket
        if not _trusted(hop_ip, proxies):
            return key_of(hop_ip)
    return key_of(peer_ip)
