"""The config section of the LiveKit SFU the bot joins (tokens, trusted services)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import ConfigError, Reader, setting, text, text_list, url
from ..rtc.trust import canonical_service


def services() -> Reader:
    """A list of service base URLs (http or https, no query, fragment or user info)."""

    def read(raw: Any, key: str, default: Any) -> tuple[str, ...]:
        urls = text_list()(raw, key, default)
        for found in urls:
            if canonical_service(found) is None:
                raise ConfigError(
                    f"{key} must list service URLs such as "
                    "https://matrix-rtc.example.org/livekit/jwt"
                    f" (http or https, no ?, # or user@), got {found!r}"
                )
        return tuple(u.rstrip("/") for u in urls)

    return read


@dataclass(frozen=True)
class LiveKitSettings:
    service_url: str = setting(
        "", url("http", "https"), "the authorization service (else the homeserver's)"
    )
    url: str = setting("", url("ws", "wss", "http", "https"), "the SFU, for local tokens")
    api_key: str = setting("", text(), "LiveKit API key: the bot mints its own tokens")
    api_secret: str = setting("", text(), "LiveKit API secret", secret=True)
    # Other SFUs' authorization services the bot may send its OpenID token to and record on
    # (a call member's transport); empty: only its own (service_url, or its homeserver's).
    trusted_services: tuple[str, ...] = setting(
        (), services(), "other SFUs' services the bot's token may go to"
    )

    def validate(self) -> None:
        if bool(self.api_key) != bool(self.api_secret):
            raise ConfigError("livekit.api_key and livekit.api_secret must be set together")
        if self.api_secret and not self.url:
            raise ConfigError("livekit.url is needed when livekit.api_secret is set")
