"""Where the bot's credentials may go, and how other SFUs' services are reached.

The trusted services (rtc/trust.py): `livekit.service_url`, the service the bot's homeserver
advertises (the bot's transport), and `livekit.trusted_services`. Requests to any of them
that a room's state triggers (another SFU of a multi-SFU call, a call member's service the
bot uses when it has none of its own) go through their own guarded client (net/outbound.py), never the Matrix client's connections; the hosts of those services
are the only ones that may use plain http or private and loopback addresses.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from ..context import BotContext
from ..media.tokens import AuthServiceClient
from ..net.outbound import AddressPolicy, GuardedClient
from ..ports import TransportUrl
from ..rtc.session import ActiveCall
from ..rtc.trust import canonical_service, trusted_service


class TrustedServices:
    def __init__(self, ctx: BotContext, transport_url: TransportUrl, log: logging.Logger) -> None:
        self.ctx = ctx
        self.transport_url = transport_url
        self._home_seen = ""  # the bot's transport when last asked (for local_hosts)
        self.outbound = GuardedClient(AddressPolicy(local_hosts=self.local_hosts))
        # Other SFUs' authorization services: through the guarded client.
        self.auth = AuthServiceClient(self.outbound, log=log)

    async def urls(self) -> list[str]:
        """Every service the bot's OpenID token may go to."""
        self._home_seen = await self.transport_url()
        return self._configured(self._home_seen)

    async def check(self, url: str) -> str | None:
        """`url` (canonical) when it is a trusted service, else None: send it nothing."""
        return trusted_service(url, await self.urls())

    async def members_service(self, call: ActiveCall | None) -> str:
        """The call members' own advertised transport (foci_preferred / rtc_transports),
        oldest member first, as Element Call's "oldest_membership" selection does, when the
        bot has none of its own: only one it trusts, else ""."""
        members = sorted(call.members.values(), key=lambda m: m.since_ms) if call else []
        for member in members:
            for transport in member.transports:
                if transport.type == "livekit" and transport.livekit_service_url:
                    url = await self.check(transport.livekit_service_url)
                    if url is not None:
                        return url
        return ""

    async def client_for(self, service: str) -> AuthServiceClient | None:
        """The guarded client for a service room state chose (a call member's, when the bot
        has none of its own); None for the bot's own transport (the Matrix client's pool)."""
        return None if service == await self.transport_url() else self.auth

    def local_hosts(self) -> set[str]:
        """The hosts of the trusted services: the operator (or homeserver) named them."""
        canonical = (canonical_service(u) for u in self._configured(self._home_seen))
        return {urlsplit(c).hostname or "" for c in canonical if c}

    def _configured(self, home: str) -> list[str]:
        lk = self.ctx.settings().livekit
        return [u for u in (lk.service_url, home, *lk.trusted_services) if u]

    async def close(self) -> None:
        await self.outbound.close()
