"""Which authorization services may receive the bot's credentials (pure).

An OpenID token of the bot is a bearer credential without an audience: whoever receives it
can get a LiveKit token as the bot from any MatrixRTC service that trusts the bot's
homeserver, the bot's own included (security review H2). So it goes only to the services the
bot's operator or homeserver named: `livekit.service_url`, what the homeserver advertises
(`/rtc/transports`, `.well-known`) and `livekit.trusted_services`. A URL that a room member
advertises is used only when it is one of those, compared exactly (after `canonical_service`):
a prefix, another path on the same host or a `#`/`?` that would cut off the path the client
appends is another service.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

# ws/wss: an SFU named by `url` (its token comes from the homeserver, not from a service).
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def canonical_service(url: str) -> str | None:
    """The service base URL in one form (scheme and host lower case, no default port, no
    trailing slash), or None when it is not a plain http(s) base URL: user info, a query or
    fragment, whitespace or control characters, no host or a bad port."""
    if not url or any(c in url for c in "#?@\\") or any(ord(c) <= 0x20 for c in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def trusted_service(url: str, trusted: Iterable[str]) -> str | None:
    """`url` in canonical form when it is one of the `trusted` services (which may be written
    in any form), else None: then the bot sends it nothing at all."""
    wanted = canonical_service(url)
    if wanted is None:
        return None
    return wanted if wanted in {canonical_service(t) for t in trusted if t} else None
