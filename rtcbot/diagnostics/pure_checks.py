"""The checks that only judge answers already fetched (pure, unit-tested): delayed-event
support, sticky events, clock skew and the claims of an issued LiveKit token."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from .report import (
    CLOCK,
    CLOCK_FIX,
    DELAYED,
    DELAYED_FIX,
    FAIL,
    JWT,
    OK,
    STICKY,
    WARN,
    Check,
    Status,
    fmt_ms,
)

EC_DEFAULT_DELAY_MS: Final = 10_000  # Element Call's default delayed-leave delay
CLOCK_WARN_MS: Final = 2_000
CLOCK_FAIL_MS: Final = 30_000


def check_delayed_support(
    versions: Mapping[str, Any], capabilities: Mapping[str, Any], planned_ms: int
) -> Check:
    """Checklist 1–2: delayed events advertised, and the maximum delay."""
    unstable = versions.get("unstable_features") or {}
    advertised = bool(unstable.get("org.matrix.msc4140"))
    caps = capabilities.get("capabilities") or {}
    cap = caps.get("org.matrix.msc4140.delayed_events") or {}
    max_delay = cap.get("max_delay_ms")
    max_delay = (
        max_delay if isinstance(max_delay, int) and not isinstance(max_delay, bool) else None
    )
    details = (
        f"/versions: org.matrix.msc4140 = {str(advertised).lower()}",
        f"capability org.matrix.msc4140.delayed_events: max_delay_ms = {max_delay}, "
        f"max_scheduled = {cap.get('max_scheduled')}",
    )
    if not advertised or max_delay == 0:
        how = "not advertised" if not advertised else "advertised, but the maximum delay is 0"
        return Check(
            DELAYED,
            FAIL,
            f"the homeserver does not offer delayed events ({how})",
            cause="`max_event_delay_duration` is not set in homeserver.yaml (or the per-user "
            "maximum `msc4140_max_delayed_events_per_user` is 0), so nobody can schedule a "
            "delayed leave (MSC4140).",
            fix=DELAYED_FIX,
            details=details,
        )
    scheduled = cap.get("max_scheduled")
    if isinstance(scheduled, int) and not isinstance(scheduled, bool) and 0 < scheduled <= 2:
        return Check(
            DELAYED,
            WARN,
            f"advertised, but at most {scheduled} pending delayed event(s) per user",
            cause="Each call the bot is in holds one pending delayed leave: past "
            f"{scheduled} calls at once the homeserver refuses the next (429) until an older "
            "one fires, and the bot falls back to an expiring membership there.",
            fix="Raise `experimental_features.msc4140_max_delayed_events_per_user` in "
            "homeserver.yaml (Synapse's default is 100).",
            details=details,
        )
    if max_delay is None:
        return Check(
            DELAYED, OK, "advertised (the homeserver publishes no maximum delay)", details=details
        )
    if max_delay < planned_ms:
        return Check(
            DELAYED,
            WARN,
            f"advertised, but the maximum delay ({fmt_ms(max_delay)}) is below the bot's "
            f"delayed leave ({fmt_ms(planned_ms)})",
            cause="`max_event_delay_duration` in homeserver.yaml is very short; the bot lowers "
            "its delay to the maximum, so a missed heartbeat ends its membership sooner.",
            fix="Raise `max_event_delay_duration` (24h is usual), or lower "
            "`membership.delayed_leave_ms` in the bot's config.",
            details=details,
        )
    if max_delay < EC_DEFAULT_DELAY_MS:
        return Check(
            DELAYED,
            WARN,
            f"advertised, maximum delay only {fmt_ms(max_delay)}",
            cause="Element Call asks for 10–18 s; old clients then fail to schedule their "
            "delayed leave and may join without one.",
            fix="Raise `max_event_delay_duration` in homeserver.yaml (24h is usual).",
            details=details,
        )
    return Check(
        DELAYED,
        OK,
        f"advertised, maximum delay {fmt_ms(max_delay)} (the bot uses {fmt_ms(planned_ms)})",
        details=details,
    )


def check_sticky(versions: Mapping[str, Any]) -> Check:
    """Checklist 15: sticky events (MSC4354), needed by Element Call's matrix_2_0 mode."""
    flag = bool((versions.get("unstable_features") or {}).get("org.matrix.msc4354"))
    details = (f"/versions: org.matrix.msc4354 = {str(flag).lower()}",)
    if flag:
        return Check(STICKY, OK, "supported (MSC4354)", details=details)
    return Check(
        STICKY,
        WARN,
        "not supported: only state-event memberships work here",
        cause="Element Call's default compatibility mode does not need sticky events, but its "
        "`matrix_2_0` mode does; the homeserver has `msc4354_enabled` off.",
        fix="Set `experimental_features: {msc4354_enabled: true}` in homeserver.yaml if clients "
        "use Element Call's matrix_2_0 mode.",
        details=details,
    )


def check_clock(skew_ms: float, rtt_ms: float) -> Check:
    """Checklist 14 (expiry): the homeserver's clock against ours, ± half the round trip."""
    uncertainty = rtt_ms / 2
    off = max(0.0, abs(skew_ms) - uncertainty)
    direction = "ahead of" if skew_ms > 0 else "behind"
    details = (
        f"origin_server_ts − local time = {skew_ms:+.0f} ms (± {uncertainty:.0f} ms, "
        f"half the {rtt_ms:.0f} ms round trip)",
    )
    if off <= CLOCK_WARN_MS:
        return Check(CLOCK, OK, f"in sync (off by {fmt_ms(abs(skew_ms))})", details=details)
    status: Status = WARN if off <= CLOCK_FAIL_MS else FAIL
    return Check(
        CLOCK,
        status,
        f"the homeserver's clock is {fmt_ms(abs(skew_ms))} {direction} the bot's",
        cause="Clients judge whether a membership expired with their own clock against "
        "timestamps written by others; with skewed clocks fresh members look expired (or ghosts "
        "stay) and the bot's heartbeats are timed wrongly.",
        fix=CLOCK_FIX,
        details=details,
    )


def check_jwt_claims(
    claims: Mapping[str, Any],
    expected_room: str,
    expected_identity: str,
    now_s: float,
) -> Check:
    """Checklist 9: the issued JWT names the right room and identity, is fresh, can join."""
    video = claims.get("video") if isinstance(claims.get("video"), dict) else {}
    assert isinstance(video, dict)
    room = video.get("room")
    identity = claims.get("sub")
    exp = claims.get("exp")
    grants = [k for k in ("roomJoin", "canPublish", "canSubscribe") if video.get(k)]
    lifetime = (
        float(exp) - now_s if isinstance(exp, int | float) and not isinstance(exp, bool) else None
    )
    details = (
        f"LiveKit room {room} (expected {expected_room})",
        f"identity {identity} (expected {expected_identity})",
        "expires "
        + (f"in {fmt_ms(lifetime * 1000)}" if lifetime is not None else "never (no exp)"),
        "grants: " + (", ".join(grants) or "none"),
    )
    problems: list[tuple[Status, str, str, str]] = []
    if not video.get("roomJoin"):
        problems.append(
            (
                FAIL,
                "the token does not allow joining the room (no roomJoin grant)",
                "The service issues tokens without the join grant.",
                "Use an up-to-date MatrixRTC authorization service.",
            )
        )
    if lifetime is not None and lifetime <= 0:
        problems.append(
            (
                FAIL,
                "the token has already expired",
                "The service's clock is wrong (or the bot's), or it issues expired tokens.",
                "Sync the service host's clock with NTP.",
            )
        )
    elif lifetime is None or lifetime < 300 or lifetime > 25 * 3600:
        problems.append(
            (
                WARN,
                "unusual lifetime: "
                + ("no expiry" if lifetime is None else f"expires in {fmt_ms(lifetime * 1000)}"),
                "lk-jwt-service issues tokens valid for 1 h; a clock difference between the "
                "service and the bot shifts this.",
                "Check the service version and both hosts' clocks.",
            )
        )
    if room != expected_room or identity != expected_identity:
        what = " and ".join(
            w
            for w, bad in (
                ("room name", room != expected_room),
                ("identity", identity != expected_identity),
            )
            if bad
        )
        problems.append(
            (
                WARN,
                f"the {what} differ from what MatrixRTC derives",
                "The service hashes room names / identities with another scheme (lk-jwt-service "
                "changed it in v0.4.1 and v0.4.3); clients read both from the token, but "
                "members may not be matched to their LiveKit participants.",
                "Upgrade the authorization service to lk-jwt-service ≥ v0.4.3 (or compatible).",
            )
        )
    if video.get("roomJoin") and not video.get("canPublish"):
        problems.append(
            (
                WARN,
                "the token may not publish (restricted access on this SFU)",
                "The service gives this homeserver restricted access (not in "
                "LIVEKIT_FULL_ACCESS_HOMESERVERS); the bot can listen but not speak.",
                "Add the bot's homeserver to the service's full-access homeservers.",
            )
        )
    if not video.get("canSubscribe"):
        problems.append(
            (WARN, "the token may not subscribe to media", "Unusual grants.", "Check the service.")
        )
    if not problems:
        return Check(
            JWT,
            OK,
            f"right room and identity, valid for {fmt_ms((lifetime or 0) * 1000)}, "
            "may join, publish and subscribe",
            details=details,
        )
    worst: Status = FAIL if any(p[0] == FAIL for p in problems) else WARN
    return Check(
        JWT,
        worst,
        "; ".join(p[1] for p in problems),
        cause=" ".join(p[2] for p in problems),
        fix=" ".join(dict.fromkeys(p[3] for p in problems)),
        details=details,
    )
