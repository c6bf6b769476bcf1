"""The config sections of the authorization service and the web endpoints."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..config import (
    ConfigError,
    choice,
    flag,
    name_map,
    number,
    setting,
    text,
    text_list,
    url,
    whole,
)

ROOMS_WITHOUT_BOT = ("refuse", "full_access", "any_user")
MIN_API_SECRET_CHARS = 32


@dataclass(frozen=True)
class AuthServiceSettings:
    enabled: bool = setting(False, flag(), "serve the MatrixRTC authorization service")
    livekit_url: str = setting(
        "", url("ws", "wss", "http", "https"), "the SFU the service's tokens are for"
    )
    api_key: str = setting("", text(), "the SFU's API key")
    api_secret: str = setting("", text(), "the SFU's API secret", secret=True)
    # Empty: the bot's own homeserver only. ("*",): every homeserver.
    full_access_homeservers: tuple[str, ...] = setting(
        (), text_list(), "homeservers whose users may get tokens for any room"
    )
    homeserver_urls: dict[str, str] = setting(
        {}, name_map(), "server name → URL, where OpenID tokens are checked"
    )
    # Rooms the bot is not in: "refuse", "full_access" (users of full-access homeservers
    # only) or "any_user" (a valid OpenID token is enough, as lk-jwt-service standalone).
    rooms_without_bot: str = setting(
        "refuse", choice(*ROOMS_WITHOUT_BOT), "tokens for rooms the bot is not in"
    )
    # Delegated delayed leave (Element Call hands its delayed leave over): offered or not;
    # client-server API URLs by server name (else the bot's own homeserver, else the
    # server's /.well-known/matrix/client); how long a job waits for the participant's first
    # connect before it sends the leave; how often the SFU is asked whether a connected
    # participant is still there (0: webhooks only).
    delegate_delayed_leave: bool = setting(True, flag(), "offer delegated delayed leaves")
    client_api_urls: dict[str, str] = setting(
        {}, name_map(urls=("http", "https")), "server name → client-server API URL"
    )
    delegated_leave_connect_timeout_s: float = setting(
        3600.0, number(1.0, 86_400.0), "how long a job waits for the first connect"
    )
    delegated_leave_check_s: float = setting(
        30.0, number(0.0, 3600.0), "how often the SFU is asked (0: webhooks only)"
    )
    # Facing anonymous callers: token requests per client IP (a token bucket); proxies whose
    # X-Forwarded-For names the client (else the peer is the client); what the delegated
    # leaves may spend of the homeserver's per-IP delayed-event budget (a fair share per user).
    rate_limit_per_ip_per_s: float = setting(
        1.0, number(0.01, 10_000.0), "token requests per client IP per second"
    )
    rate_limit_per_ip_burst: int = setting(30, whole(1, 100_000), "and their burst")
    trusted_proxies: tuple[str, ...] = setting(
        (), text_list(), "proxies whose X-Forwarded-For is believed"
    )
    # MSC4512 (Synapse ≥ 1.161): the `hs_token` of rtcbot's application service registration
    # (`make appservice-registration`); empty: not an application service. With it, Synapse's
    # `rtc/livekit/get_token` proxy reaches this service (auth/homeserver_tokens.py).
    appservice_hs_token: str = setting(
        "", text(), "hs_token of the MSC4512 application service (empty: off)", secret=True
    )
    delegated_leave_budget_per_s: float = setting(
        1.0, number(0.01, 10_000.0), "delayed-event requests per second for delegated leaves"
    )

    def validate(self) -> None:
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)  # an address or a CIDR
            except ValueError:
                raise ConfigError(
                    f"auth_service.trusted_proxies must list IP addresses or CIDRs, got {proxy!r}"
                ) from None
        if self.api_secret and len(self.api_secret) < MIN_API_SECRET_CHARS:
            raise ConfigError(
                f"auth_service.api_secret must be at least {MIN_API_SECRET_CHARS} characters "
                "(LiveKit refuses shorter ones, and a short one can be guessed)"
            )
        if self.appservice_hs_token and len(self.appservice_hs_token) < MIN_API_SECRET_CHARS:
            raise ConfigError(
                f"auth_service.appservice_hs_token must be at least {MIN_API_SECRET_CHARS} "
                "characters (`make appservice-registration` makes one)"
            )
        if "*" in self.full_access_homeservers and len(self.full_access_homeservers) > 1:
            raise ConfigError(
                'auth_service.full_access_homeservers: "*" (every homeserver) must be the only '
                f"entry, got {list(self.full_access_homeservers)!r}"
            )
        if self.enabled and not (self.livekit_url and self.api_key and self.api_secret):
            raise ConfigError(
                "auth_service.enabled needs auth_service.livekit_url, api_key and api_secret"
            )


@dataclass(frozen=True)
class WebSettings:
    status_token: str = setting("", text(), "bearer token for /status", secret=True)
    # Empty: /metrics only for unproxied loopback requests (a local scraper).
    metrics_token: str = setting("", text(), "bearer token for /metrics", secret=True)
