"""The instance's settings: every feature's config section, assembled (and maubot's config
class, whose update copies exactly the declared keys).

The sections are declared beside their features (`config.setting`); this module only names
them and reads them in order, so a key is written once in code and once in base-config.yaml
(tests/unit/test_config_declarations.py holds the two together).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mautrix.util.config import BaseProxyConfig, ConfigUpdateHelper

from .auth.settings import AuthServiceSettings, WebSettings
from .calls.settings import CallCardSettings, CallSettings, InviteSettings, NoticeSettings
from .commands.permissions import DEFAULT_LEVELS
from .config import ConfigError, declared, get, read_section, text, whole
from .matrix.membership_settings import MembershipSettings
from .media.livekit_settings import LiveKitSettings
from .recording.settings import AnnouncerSettings, RecordingSettings
from .schedules.settings import ScheduleSettings
from .transcripts.settings import CaptionSettings, RecapSettings, TranscriptSettings

# Config section → its settings class (the attribute of Settings has the section's name).
SECTIONS: dict[str, type[Any]] = {
    "invites": InviteSettings,
    "notices": NoticeSettings,
    "membership": MembershipSettings,
    "livekit": LiveKitSettings,
    "auth_service": AuthServiceSettings,
    "schedules": ScheduleSettings,
    "web": WebSettings,
    "recording": RecordingSettings,
    "announcer": AnnouncerSettings,
    "calls": CallSettings,
    "transcripts": TranscriptSettings,
    "captions": CaptionSettings,
    "recap": RecapSettings,
    "call_card": CallCardSettings,
}
DEFAULT_COMMAND = "call"


@dataclass(frozen=True)
class Settings:
    command: str = DEFAULT_COMMAND
    invites: InviteSettings = field(default_factory=InviteSettings)
    notices: NoticeSettings = field(default_factory=NoticeSettings)
    membership: MembershipSettings = field(default_factory=MembershipSettings)
    livekit: LiveKitSettings = field(default_factory=LiveKitSettings)
    auth_service: AuthServiceSettings = field(default_factory=AuthServiceSettings)
    schedules: ScheduleSettings = field(default_factory=ScheduleSettings)
    web: WebSettings = field(default_factory=WebSettings)
    recording: RecordingSettings = field(default_factory=RecordingSettings)
    announcer: AnnouncerSettings = field(default_factory=AnnouncerSettings)
    calls: CallSettings = field(default_factory=CallSettings)
    transcripts: TranscriptSettings = field(default_factory=TranscriptSettings)
    captions: CaptionSettings = field(default_factory=CaptionSettings)
    recap: RecapSettings = field(default_factory=RecapSettings)
    call_card: CallCardSettings = field(default_factory=CallCardSettings)
    # Power level needed per command action (commands/permissions.py).
    permissions: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_LEVELS))


def declared_settings() -> Iterator[tuple[str, Any, str]]:
    """(key, default, doc) of every setting: the command word, the sections, permissions."""
    yield "command", DEFAULT_COMMAND, "the command word: !call"
    for prefix, cls in SECTIONS.items():
        yield from declared(cls, prefix)
    for name, level in DEFAULT_LEVELS.items():
        yield f"permissions.{name}", level, "power level needed"


def parse_settings(raw: Any) -> Settings:
    """Validate the raw config mapping; raise ConfigError naming the first bad key."""
    command = text()(raw, "command", DEFAULT_COMMAND)
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", command):
        raise ConfigError(f"command must be one lowercase word such as 'call', got {command!r}")
    sections = {prefix: read_section(cls, raw, prefix) for prefix, cls in SECTIONS.items()}
    return Settings(command=command, permissions=_permissions(raw), **sections)


def _permissions(raw: Any) -> dict[str, int]:
    given = get(raw, "permissions") or {}
    if not isinstance(given, dict):
        raise ConfigError("permissions must map commands to power levels")
    unknown = sorted(set(given) - set(DEFAULT_LEVELS))
    if unknown:
        raise ConfigError(
            f"permissions.{unknown[0]} is not a command; known: {', '.join(DEFAULT_LEVELS)}"
        )
    # Power levels are JSON integers (Matrix spec: -(2**53)+1 … 2**53-1).
    named = {f"permissions.{name}": level for name, level in given.items()}
    level = whole(-(2**53) + 1, 2**53 - 1)
    return {
        name: level(named, f"permissions.{name}", default)
        for name, default in DEFAULT_LEVELS.items()
    }


class Config(BaseProxyConfig):
    def do_update(self, helper: ConfigUpdateHelper) -> None:
        # recording.min_power_level was the level for recording before `permissions` existed.
        helper.copy("recording.min_power_level", "permissions.record")
        for key, default, _doc in declared_settings():
            if isinstance(default, dict):
                helper.copy_dict(key)
            else:
                helper.copy(key)
