"""base-config.yaml is documented and valid; bad values get messages that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from rtcbot.config import ConfigError
from rtcbot.settings import parse_settings

BASE = Path(__file__).resolve().parents[2] / "base-config.yaml"


class Dotted(dict[str, Any]):
    """The dotted-key access maubot's proxy config offers."""

    def __init__(self, data: Any) -> None:
        super().__init__()
        self.data = data

    def __getitem__(self, key: str) -> Any:
        cur = self.data
        for part in key.split("."):
            cur = cur[part]
        return cur


def load(overrides: dict[str, Any] | None = None) -> Dotted:
    data = YAML().load(BASE.read_text())
    for key, value in (overrides or {}).items():
        section, _, leaf = key.rpartition(".")
        target = data
        for part in section.split(".") if section else []:
            target = target[part]
        target[leaf] = value
    return Dotted(data)


def test_base_config_is_valid() -> None:
    settings = parse_settings(load())
    assert settings.command == "call"
    assert settings.membership.delayed_leave_ms == 8000


def test_every_key_is_commented() -> None:
    lines = BASE.read_text().splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.endswith(":"):
            continue  # comments, blank lines and section headers
        above = [prev.strip() for prev in lines[:i] if prev.strip()]
        assert above and (above[-1].startswith("#") or above[-1].endswith(":")), (
            f"base-config.yaml line {i + 1} has no comment: {line!r}"
        )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "notices.default_level",
            "loud",
            "notices.default_level must be one of off, summary, all",
        ),
        ("command", "Call Bot", "command must be one lowercase word"),
        (
            "membership.delayed_leave_ms",
            "8s",
            "membership.delayed_leave_ms must be a whole number",
        ),
        ("membership.restart_interval_ms", 6000, "at most half of membership.delayed_leave_ms"),
        ("livekit.service_url", "rtc.example.org", "livekit.service_url must be a URL"),
        ("livekit.api_secret", "s3cret-but-no-key", "must be set together"),
        ("recording.max_minutes", 0, "recording.max_minutes must be between 1 and 1440"),
        ("invites.allowed_users", [5], "invites.allowed_users must be a list of text values"),
        (
            "livekit.trusted_services",
            ["https://sfu.example/jwt#"],
            "livekit.trusted_services must list service URLs",
        ),
        ("auth_service.api_secret", "short-secret", "at least 32 characters"),
        ("auth_service.rate_limit_per_ip_burst", 0, "between 1 and 100000"),
        ("auth_service.trusted_proxies", ["proxy.local"], "must list IP addresses"),
    ],
)
def test_bad_values_name_the_key(key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_settings(load({key: value}))


def test_secrets_are_not_in_reprs() -> None:
    settings = parse_settings(
        load(
            {
                "livekit.api_key": "k",
                "livekit.api_secret": "topsecretvalue",
                "livekit.url": "ws://x",
            }
        )
    )
    assert "topsecretvalue" not in repr(settings)
