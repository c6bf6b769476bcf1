"""Whose is an OpenID token: asked of the server it names (federation discovery, or the
configured URL), over the guarded client for anonymous callers (net/outbound.py); a server
that failed moments ago is not asked again yet."""

from __future__ import annotations

import json

import aiohttp

from rtcbot.auth.policy import MAX_USERINFO_BYTES, unauthorised
from rtcbot.auth.requests import OpenIDToken, printable
from rtcbot.auth.settings import AuthServiceSettings
from rtcbot.matrix.server_discovery import (
    FederationDiscovery,
    InvalidServerName,
    parse_server_name,
)
from rtcbot.net.outbound import GuardedClient


class OpenIdCheck:
    def __init__(
        self, outbound: GuardedClient, discovery: FederationDiscovery, timeout: float
    ) -> None:
        self.outbound = outbound
        self.discovery = discovery
        self.timeout = timeout

    async def owner(self, token: OpenIDToken, settings: AuthServiceSettings) -> str:
        """Return the Matrix user id the token belongs to, or raise 401."""
        server = token.matrix_server_name
        try:
            parse_server_name(server)
        except InvalidServerName:
            raise unauthorised(
                f"matrix_server_name {printable(server[:64])!r} is not a valid server name"
            ) from None
        if self.outbound.recently_failed(server):
            raise unauthorised(f"{server} could not be reached moments ago; not asked again yet")
        try:
            base = settings.homeserver_urls.get(server) or await self.discovery.base_url(server)
            url = f"{base.rstrip('/')}/_matrix/federation/v1/openid/userinfo"
            async with self.outbound.get(
                url,
                params={"access_token": token.access_token},
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                allow_redirects=False,
            ) as resp:
                status = resp.status
                raw = await resp.content.read(MAX_USERINFO_BYTES)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.outbound.failed(server)
            # The exception text may contain the request URL, and so the token: type only.
            raise unauthorised(
                f"could not reach {server} to check the OpenID token ({type(exc).__name__})"
            ) from None
        if status >= 500:
            self.outbound.failed(server)
        if status != 200:
            raise unauthorised(f"{base} answered {status} to the OpenID userinfo request")
        try:
            info = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise unauthorised(f"{base} sent a userinfo answer that is not JSON") from None
        sub = info.get("sub") if isinstance(info, dict) else None
        if (
            not isinstance(sub, str)
            or not sub.startswith("@")
            or ":" not in sub
            or len(sub) > 255
            or any(c.isspace() or not c.isprintable() for c in sub)
        ):
            raise unauthorised(f"{base} sent a userinfo answer without a valid user id")
        if sub.split(":", 1)[1] != server:
            raise unauthorised(f"{base} vouched for {sub}, who does not belong to {server}")
        return sub
