"""The instance config: maubot's proxy config, validated into typed settings."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from mautrix.util.config import BaseProxyConfig, ConfigUpdateHelper

from .commands.permissions import DEFAULT_LEVELS
from .rtc.trust import canonical_service
from .schedules.parse import UnknownTimezone, resolve_timezone
from .transcripts.engine import ModelSettings

NOTIFY_LEVELS = ("off", "summary", "all")
ROOMS_WITHOUT_BOT = ("refuse", "full_access", "any_user")
MIN_API_SECRET_CHARS = 32


class ConfigError(ValueError):
    """A config value is wrong; the message names the key and what is expected."""


class Config(BaseProxyConfig):
    def do_update(self, helper: ConfigUpdateHelper) -> None:
        for key in (
            "command",
            "invites.allowed_users",
            "invites.allowed_servers",
            "invites.from_anyone",
            "notices.default_level",
            "notices.batch_seconds",
            "membership.delayed_leave_ms",
            "membership.restart_interval_ms",
            "membership.expires_ms",
            "membership.fallback_expires_ms",
            "livekit.service_url",
            "livekit.url",
            "livekit.api_key",
            "livekit.api_secret",
            "livekit.trusted_services",
            "auth_service.enabled",
            "auth_service.livekit_url",
            "auth_service.api_key",
            "auth_service.api_secret",
            "auth_service.full_access_homeservers",
            "auth_service.rooms_without_bot",
            "auth_service.delegate_delayed_leave",
            "auth_service.delegated_leave_connect_timeout_s",
            "auth_service.delegated_leave_check_s",
            # Facing anonymous callers (issue 19): rate limits, proxies, the restart budget.
            "auth_service.rate_limit_per_ip_per_s",
            "auth_service.rate_limit_per_ip_burst",
            "auth_service.trusted_proxies",
            "auth_service.delegated_leave_budget_per_s",
            "schedules.default_timezone",
            "schedules.grace_minutes",
            "schedules.mention_room",
            "schedules.nobody_joined_note",
        ):
            helper.copy(key)
        helper.copy_dict("auth_service.homeserver_urls")
        helper.copy_dict("auth_service.client_api_urls")
        helper.copy("web.status_token")
        helper.copy("web.metrics_token")
        # recording.min_power_level was the level for recording before `permissions` existed.
        helper.copy("recording.min_power_level", "permissions.record")
        for name in DEFAULT_LEVELS:
            helper.copy(f"permissions.{name}")
        helper.copy("calls.bot_may_start")
        for key in (
            "recording.max_minutes",
            "recording.directory",
            "recording.max_upload_mb",
            "recording.retention_days",
            "recording.spoken_consent",
            "recording.max_concurrent",
            "recording.max_tracks",
            "recording.min_free_mb",
            "announcer.join_chime",
            "transcripts.enabled",
            "transcripts.model",
            "transcripts.language",
            "transcripts.compute_type",
            "transcripts.cpu_threads",
            "transcripts.max_jobs",
            "transcripts.max_queued",
            "transcripts.max_queued_per_room",
            "transcripts.chunk_minutes",
            "transcripts.download_root",
            "transcripts.local_files_only",
            "captions.enabled",
            "captions.batch_seconds",
            "call_card.enabled",
            "call_card.image",
        ):
            helper.copy(key)


@dataclass(frozen=True)
class InviteSettings:
    allowed_users: tuple[str, ...] = ()
    allowed_servers: tuple[str, ...] = ()
    from_anyone: bool = False  # both lists empty: only the bot's own homeserver


@dataclass(frozen=True)
class NoticeSettings:
    default_level: str = "all"
    batch_seconds: float = 2.0


@dataclass(frozen=True)
class MembershipSettings:
    delayed_leave_ms: int = 8000
    restart_interval_ms: int = 4000
    expires_ms: int = 14_400_000
    fallback_expires_ms: int = 60_000


@dataclass(frozen=True)
class LiveKitSettings:
    service_url: str = ""
    url: str = ""
    api_key: str = ""
    api_secret: str = field(default="", repr=False)
    # Other SFUs' authorization services the bot may send its OpenID token to and record on
    # (a call member's transport); empty: only its own (service_url, or its homeserver's).
    trusted_services: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuthServiceSettings:
    enabled: bool = False
    livekit_url: str = ""
    api_key: str = ""
    api_secret: str = field(default="", repr=False)
    # Empty: the bot's own homeserver only. ("*",): every homeserver.
    full_access_homeservers: tuple[str, ...] = ()
    homeserver_urls: dict[str, str] = field(default_factory=dict)
    # Rooms the bot is not in: "refuse", "full_access" (users of full-access homeservers
    # only) or "any_user" (a valid OpenID token is enough, as lk-jwt-service standalone).
    rooms_without_bot: str = "refuse"
    # Delegated delayed leave (Element Call hands its delayed leave over): offered or not;
    # client-server API URLs by server name (else the bot's own homeserver, else the
    # server's /.well-known/matrix/client); how long a job waits for the participant's first
    # connect before it sends the leave; how often the SFU is asked whether a connected
    # participant is still there (0: webhooks only).
    delegate_delayed_leave: bool = True
    client_api_urls: dict[str, str] = field(default_factory=dict)
    delegated_leave_connect_timeout_s: float = 3600.0
    delegated_leave_check_s: float = 30.0
    # Facing anonymous callers: token requests per client IP (a token bucket); proxies whose
    # X-Forwarded-For names the client (else the peer is the client); what the delegated
    # leaves may spend of the homeserver's per-IP delayed-event budget (a fair share per user).
    rate_limit_per_ip_per_s: float = 1.0
    rate_limit_per_ip_burst: int = 30
    trusted_proxies: tuple[str, ...] = ()
    delegated_leave_budget_per_s: float = 1.0


@dataclass(frozen=True)
class CallSettings:
    # False: join, record and announce need a call with people in it (the bot never starts
    # a call alone; clients would show a call with only the bot in it).
    bot_may_start: bool = False


@dataclass(frozen=True)
class RecordingSettings:
    max_minutes: int = 120
    directory: str = "rtcbot-recordings"
    max_upload_mb: int = 50
    retention_days: int = 7
    spoken_consent: bool = True
    # Limits: recordings at once (instance-wide), speakers per recording, free disk (MB).
    max_concurrent: int = 4
    max_tracks: int = 25
    min_free_mb: int = 500


@dataclass(frozen=True)
class TranscriptSettings:
    # A transcript after each recording (a room can turn it off or on: `!call transcript`).
    enabled: bool = True
    model: str = "base"  # a faster-whisper model name, a local directory or package:<module>
    language: str = ""  # "" = detect
    compute_type: str = "int8"
    cpu_threads: int = 1
    max_jobs: int = 2
    chunk_minutes: float = 5.0
    download_root: str = ""
    local_files_only: bool = False
    # Recordings waiting for (or getting) their transcript: in all rooms, and per room.
    max_queued: int = 20
    max_queued_per_room: int = 3

    def model_settings(self) -> ModelSettings:
        return ModelSettings(
            model=self.model,
            language=self.language,
            compute_type=self.compute_type,
            cpu_threads=self.cpu_threads,
            max_jobs=self.max_jobs,
            download_root=self.download_root,
            local_files_only=self.local_files_only,
        )


@dataclass(frozen=True)
class CaptionSettings:
    # Live captions while recording (off by default; a room turns them on: `!call captions`).
    enabled: bool = False
    batch_seconds: float = 4.0  # a speaker who speaks on is posted this often (else at a pause)


@dataclass(frozen=True)
class CallCardSettings:
    enabled: bool = True  # the card at the end of a call (where `!call notify` posts the end)
    image: bool = True  # with the picture of who spoke when


@dataclass(frozen=True)
class AnnouncerSettings:
    join_chime: bool = True


@dataclass(frozen=True)
class WebSettings:
    status_token: str = field(default="", repr=False)
    # Empty: /metrics only for unproxied loopback requests (a local scraper).
    metrics_token: str = field(default="", repr=False)


@dataclass(frozen=True)
class ScheduleSettings:
    default_timezone: str = "UTC"
    grace_minutes: int = 10
    mention_room: bool = True
    nobody_joined_note: bool = True


@dataclass(frozen=True)
class Settings:
    command: str = "call"
    invites: InviteSettings = InviteSettings()
    notices: NoticeSettings = NoticeSettings()
    membership: MembershipSettings = MembershipSettings()
    livekit: LiveKitSettings = LiveKitSettings()
    auth_service: AuthServiceSettings = AuthServiceSettings()
    schedules: ScheduleSettings = ScheduleSettings()
    web: WebSettings = WebSettings()
    recording: RecordingSettings = RecordingSettings()
    announcer: AnnouncerSettings = AnnouncerSettings()
    calls: CallSettings = CallSettings()
    transcripts: TranscriptSettings = TranscriptSettings()
    captions: CaptionSettings = CaptionSettings()
    call_card: CallCardSettings = CallCardSettings()
    # Power level needed per command (commands/permissions.py).
    permissions: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_LEVELS))


# -- validation helpers ----------------------------------------------------------------------
def _get(raw: Any, key: str) -> Any:
    try:
        return raw[key]
    except (KeyError, TypeError):
        return None


def _str(raw: Any, key: str, default: str = "") -> str:
    val = _get(raw, key)
    if val is None:
        return default
    if not isinstance(val, str):
        raise ConfigError(f"{key} must be text, got {val!r}")
    return val.strip()


def _str_list(raw: Any, key: str) -> tuple[str, ...]:
    val = _get(raw, key)
    if val is None:
        return ()
    if isinstance(val, str):
        val = [val]
    if not isinstance(val, list) or not all(isinstance(v, str) for v in val):
        raise ConfigError(f"{key} must be a list of text values, got {val!r}")
    return tuple(v.strip() for v in val if v.strip())


def _int(raw: Any, key: str, default: int, minimum: int, maximum: int) -> int:
    val = _get(raw, key)
    if val is None:
        return default
    if isinstance(val, bool) or not isinstance(val, int):
        raise ConfigError(f"{key} must be a whole number, got {val!r}")
    if not minimum <= val <= maximum:
        raise ConfigError(f"{key} must be between {minimum} and {maximum}, got {val}")
    return val


def _float(raw: Any, key: str, default: float, minimum: float, maximum: float) -> float:
    val = _get(raw, key)
    if val is None:
        return default
    if isinstance(val, bool) or not isinstance(val, int | float):
        raise ConfigError(f"{key} must be a number, got {val!r}")
    if not minimum <= float(val) <= maximum:
        raise ConfigError(f"{key} must be between {minimum} and {maximum}, got {val}")
    return float(val)


def _bool(raw: Any, key: str, default: bool) -> bool:
    val = _get(raw, key)
    if val is None:
        return default
    if not isinstance(val, bool):
        raise ConfigError(f"{key} must be true or false, got {val!r}")
    return val


def _url(raw: Any, key: str, schemes: tuple[str, ...]) -> str:
    val = _str(raw, key)
    if val and not re.match(rf"^({'|'.join(schemes)})://[^/\s]+", val):
        raise ConfigError(
            f"{key} must be a URL starting with {' or '.join(schemes)}://, got {val!r}"
        )
    return val.rstrip("/")


def _services(raw: Any, key: str) -> tuple[str, ...]:
    """A list of service base URLs (http or https, no query, fragment or user info)."""
    urls = _str_list(raw, key)
    for url in urls:
        if canonical_service(url) is None:
            raise ConfigError(
                f"{key} must list service URLs such as https://matrix-rtc.example.org/livekit/jwt"
                f" (http or https, no ?, # or user@), got {url!r}"
            )
    return tuple(u.rstrip("/") for u in urls)


def _timezone(raw: Any, key: str, default: str) -> str:
    name = _str(raw, key, default) or default
    try:
        return resolve_timezone(name)
    except UnknownTimezone as e:
        hint = f" (did you mean {e.suggestion}?)" if e.suggestion else ""
        raise ConfigError(
            f"{key} must be a time zone name such as Europe/Berlin or UTC, got {name!r}{hint}"
        ) from None


def parse_settings(raw: Any) -> Settings:
    """Validate the raw config mapping; raise ConfigError naming the first bad key."""
    command = _str(raw, "command", "call")
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", command):
        raise ConfigError(f"command must be one lowercase word such as 'call', got {command!r}")
    level = _str(raw, "notices.default_level", "all")
    if level not in NOTIFY_LEVELS:
        raise ConfigError(
            f"notices.default_level must be one of {', '.join(NOTIFY_LEVELS)}, got {level!r}"
        )
    membership = MembershipSettings(
        delayed_leave_ms=_int(raw, "membership.delayed_leave_ms", 8000, 1000, 3_600_000),
        restart_interval_ms=_int(raw, "membership.restart_interval_ms", 4000, 200, 3_600_000),
        expires_ms=_int(raw, "membership.expires_ms", 14_400_000, 10_000, 7 * 86_400_000),
        fallback_expires_ms=_int(raw, "membership.fallback_expires_ms", 60_000, 5_000, 86_400_000),
    )
    if membership.restart_interval_ms * 2 > membership.delayed_leave_ms:
        raise ConfigError(
            "membership.restart_interval_ms must be at most half of membership.delayed_leave_ms "
            f"(got {membership.restart_interval_ms} and {membership.delayed_leave_ms}), "
            "or one late heartbeat would end the bot's membership"
        )
    livekit = LiveKitSettings(
        service_url=_url(raw, "livekit.service_url", ("http", "https")),
        url=_url(raw, "livekit.url", ("ws", "wss", "http", "https")),
        api_key=_str(raw, "livekit.api_key"),
        api_secret=_str(raw, "livekit.api_secret"),
        trusted_services=_services(raw, "livekit.trusted_services"),
    )
    if bool(livekit.api_key) != bool(livekit.api_secret):
        raise ConfigError("livekit.api_key and livekit.api_secret must be set together")
    if livekit.api_secret and not livekit.url:
        raise ConfigError("livekit.url is needed when livekit.api_secret is set")
    hs_urls_raw = _get(raw, "auth_service.homeserver_urls") or {}
    if not isinstance(hs_urls_raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in hs_urls_raw.items()
    ):
        raise ConfigError("auth_service.homeserver_urls must map server names to URLs")
    cs_urls_raw = _get(raw, "auth_service.client_api_urls") or {}
    if not isinstance(cs_urls_raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in cs_urls_raw.items()
    ):
        raise ConfigError("auth_service.client_api_urls must map server names to URLs")
    prefix = "auth_service.client_api_urls."
    named = {prefix + k: v for k, v in cs_urls_raw.items()}
    cs_urls = {k[len(prefix) :]: _url(named, k, ("http", "https")) for k in named}
    auth = AuthServiceSettings(
        enabled=_bool(raw, "auth_service.enabled", False),
        livekit_url=_url(raw, "auth_service.livekit_url", ("ws", "wss", "http", "https")),
        api_key=_str(raw, "auth_service.api_key"),
        api_secret=_str(raw, "auth_service.api_secret"),
        full_access_homeservers=_str_list(raw, "auth_service.full_access_homeservers"),
        homeserver_urls={k: v.rstrip("/") for k, v in hs_urls_raw.items()},
        rooms_without_bot=_str(raw, "auth_service.rooms_without_bot", "refuse") or "refuse",
        delegate_delayed_leave=_bool(raw, "auth_service.delegate_delayed_leave", True),
        client_api_urls=cs_urls,
        delegated_leave_connect_timeout_s=_float(
            raw, "auth_service.delegated_leave_connect_timeout_s", 3600.0, 1.0, 86_400.0
        ),
        delegated_leave_check_s=_float(
            raw, "auth_service.delegated_leave_check_s", 30.0, 0.0, 3600.0
        ),
        rate_limit_per_ip_per_s=_float(
            raw, "auth_service.rate_limit_per_ip_per_s", 1.0, 0.01, 10_000.0
        ),
        rate_limit_per_ip_burst=_int(raw, "auth_service.rate_limit_per_ip_burst", 30, 1, 100_000),
        trusted_proxies=_str_list(raw, "auth_service.trusted_proxies"),
        delegated_leave_budget_per_s=_float(
            raw, "auth_service.delegated_leave_budget_per_s", 1.0, 0.01, 10_000.0
        ),
    )
    for proxy in auth.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)  # an address or a CIDR
        except ValueError:
            raise ConfigError(
                f"auth_service.trusted_proxies must list IP addresses or CIDRs, got {proxy!r}"
            ) from None
    if auth.api_secret and len(auth.api_secret) < MIN_API_SECRET_CHARS:
        raise ConfigError(
            f"auth_service.api_secret must be at least {MIN_API_SECRET_CHARS} characters "
            "(LiveKit refuses shorter ones, and a short one can be guessed)"
        )
    if "*" in auth.full_access_homeservers and len(auth.full_access_homeservers) > 1:
        raise ConfigError(
            'auth_service.full_access_homeservers: "*" (every homeserver) must be the only '
            f"entry, got {list(auth.full_access_homeservers)!r}"
        )
    if auth.rooms_without_bot not in ROOMS_WITHOUT_BOT:
        raise ConfigError(
            "auth_service.rooms_without_bot must be one of "
            f"{', '.join(ROOMS_WITHOUT_BOT)}, got {auth.rooms_without_bot!r}"
        )
    if auth.enabled and not (auth.livekit_url and auth.api_key and auth.api_secret):
        raise ConfigError(
            "auth_service.enabled needs auth_service.livekit_url, api_key and api_secret"
        )
    return Settings(
        command=command,
        invites=InviteSettings(
            allowed_users=_str_list(raw, "invites.allowed_users"),
            allowed_servers=_str_list(raw, "invites.allowed_servers"),
            from_anyone=_bool(raw, "invites.from_anyone", False),
        ),
        notices=NoticeSettings(
            default_level=level,
            batch_seconds=_float(raw, "notices.batch_seconds", 2.0, 0.0, 300.0),
        ),
        membership=membership,
        livekit=livekit,
        auth_service=auth,
        schedules=ScheduleSettings(
            default_timezone=_timezone(raw, "schedules.default_timezone", "UTC"),
            grace_minutes=_int(raw, "schedules.grace_minutes", 10, 0, 7 * 24 * 60),
            mention_room=_bool(raw, "schedules.mention_room", True),
            nobody_joined_note=_bool(raw, "schedules.nobody_joined_note", True),
        ),
        web=WebSettings(
            status_token=_str(raw, "web.status_token"),
            metrics_token=_str(raw, "web.metrics_token"),
        ),
        recording=RecordingSettings(
            max_minutes=_int(raw, "recording.max_minutes", 120, 1, 24 * 60),
            directory=_str(raw, "recording.directory", "rtcbot-recordings") or "rtcbot-recordings",
            max_upload_mb=_int(raw, "recording.max_upload_mb", 50, 0, 10_000),
            retention_days=_int(raw, "recording.retention_days", 7, 0, 3650),
            spoken_consent=_bool(raw, "recording.spoken_consent", True),
            max_concurrent=_int(raw, "recording.max_concurrent", 4, 1, 1000),
            max_tracks=_int(raw, "recording.max_tracks", 25, 1, 1000),
            min_free_mb=_int(raw, "recording.min_free_mb", 500, 0, 10**12),
        ),
        announcer=AnnouncerSettings(join_chime=_bool(raw, "announcer.join_chime", True)),
        calls=CallSettings(bot_may_start=_bool(raw, "calls.bot_may_start", False)),
        transcripts=_transcripts(raw),
        captions=CaptionSettings(
            enabled=_bool(raw, "captions.enabled", False),
            batch_seconds=_float(raw, "captions.batch_seconds", 4.0, 0.5, 60.0),
        ),
        call_card=CallCardSettings(
            enabled=_bool(raw, "call_card.enabled", True),
            image=_bool(raw, "call_card.image", True),
        ),
        permissions=_permissions(raw),
    )


COMPUTE_TYPES = ("int8", "int8_float32", "int16", "float32", "default")


def _transcripts(raw: Any) -> TranscriptSettings:
    model = _str(raw, "transcripts.model", "base") or "base"
    compute = _str(raw, "transcripts.compute_type", "int8") or "int8"
    if compute not in COMPUTE_TYPES:
        raise ConfigError(
            f"transcripts.compute_type must be one of {', '.join(COMPUTE_TYPES)}, got {compute!r}"
        )
    language = _str(raw, "transcripts.language", "").strip().lower()
    if language in ("auto", "detect"):
        language = ""
    if language and not re.fullmatch(r"[a-z]{2,3}", language):
        raise ConfigError(
            f"transcripts.language must be a language code such as 'en' or empty, got {language!r}"
        )
    return TranscriptSettings(
        enabled=_bool(raw, "transcripts.enabled", True),
        model=model,
        language=language,
        compute_type=compute,
        cpu_threads=_int(raw, "transcripts.cpu_threads", 1, 1, 64),
        max_jobs=_int(raw, "transcripts.max_jobs", 2, 1, 16),
        chunk_minutes=_float(raw, "transcripts.chunk_minutes", 5.0, 0.5, 60.0),
        download_root=_str(raw, "transcripts.download_root", ""),
        local_files_only=_bool(raw, "transcripts.local_files_only", False),
        max_queued=_int(raw, "transcripts.max_queued", 20, 1, 1000),
        max_queued_per_room=_int(raw, "transcripts.max_queued_per_room", 3, 1, 1000),
    )


def _permissions(raw: Any) -> dict[str, int]:
    given = _get(raw, "permissions") or {}
    if not isinstance(given, dict):
        raise ConfigError("permissions must map commands to power levels")
    unknown = sorted(set(given) - set(DEFAULT_LEVELS))
    if unknown:
        raise ConfigError(
            f"permissions.{unknown[0]} is not a command; known: {', '.join(DEFAULT_LEVELS)}"
        )
    # Power levels are JSON integers (Matrix spec: -(2**53)+1 … 2**53-1).
    named = {f"permissions.{name}": level for name, level in given.items()}
    return {
        name: _int(named, f"permissions.{name}", default, -(2**53) + 1, 2**53 - 1)
        for name, default in DEFAULT_LEVELS.items()
    }
