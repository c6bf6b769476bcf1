"""`!call diag`: check from the bot's seat everything a MatrixRTC call in this room depends on.

The checks follow the checklist in matrixrtc-protocol.md §5 (those that apply to a bot):
delayed events (advertised, maximum delay, a real schedule → restart → cancel round trip),
SFU discovery (transports endpoint, legacy well-known), the authorization service (health,
endpoint generation, an OpenID round trip, the issued JWT), LiveKit reachability, power levels
and the bot's state key, the bot's own membership, sticky events, clock skew and ghosts.

They run concurrently, each with its own timeout, and the report is one message edited in
place as they finish. Secrets policy: the report and the log never carry a secret, token or
JWT; whatever is rendered goes through `redact` last, with every secret this run has seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import re
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

import aiohttp
from mautrix.api import Method, Path
from mautrix.errors import MatrixRequestError
from mautrix.types import EventID, RoomID, UserID

from .matrix.delayed_events import (
    DelayedEventError,
    DelayedEventNotFound,
    DelayedEvents,
    DelayedEventsUnsupported,
    DelayTooLarge,
    RateLimited,
    RequestRefused,
    TransientError,
)
from .matrix.permissions import FIX_HINT, check_call_permission
from .matrix.publisher import LeaveMode, State
from .matrix.transports import RTC_FOCI_KEY, TRANSPORTS_PATH, first_livekit_url
from .media.tokens import AuthServiceClient, SfuAccess, SfuAuthError, mint_local_token
from .rtc.identity import (
    DEFAULT_SLOT_ID,
    decode_jwt_claims,
    legacy_identity,
    livekit_identity,
    livekit_room_alias,
)
from .rtc.membership import CALL_MEMBER_TYPE, make_state_key, parse_state_event

if TYPE_CHECKING:
    from .bot import RtcBot
    from .commands import CommandContext, CommandRouter

Status = Literal["ok", "warn", "fail", "skip"]
OK: Final = "ok"
WARN: Final = "warn"
FAIL: Final = "fail"
SKIP: Final = "skip"
ICONS: Final[Mapping[str, str]] = {OK: "✅", WARN: "⚠️", FAIL: "❌", SKIP: "➖"}
PENDING_ICON: Final = "⏳"

# The report's lines, in the order they are shown.
DELAYED = "Delayed events"
ROUND_TRIP = "Delayed-event round trip"
TRANSPORTS = "Transports endpoint"
WELL_KNOWN = "Well-known rtc_foci"
AUTH_HEALTH = "Authorization service"
AUTH_ENDPOINTS = "Token endpoints"
OPENID = "OpenID round trip"
JWT = "LiveKit token"
SFU = "SFU reachable"
PERM_BOT = "Call permission: the bot"
PERM_MEMBERS = "Call permission: members"
STATE_KEY = "State key accepted"
OWN_MEMBERSHIP = "The bot's membership"
STICKY = "Sticky events"
CLOCK = "Clock skew"
GHOSTS = "Ghost memberships"
LINES: Final = (
    DELAYED,
    ROUND_TRIP,
    TRANSPORTS,
    WELL_KNOWN,
    AUTH_HEALTH,
    AUTH_ENDPOINTS,
    OPENID,
    JWT,
    SFU,
    PERM_BOT,
    PERM_MEMBERS,
    STATE_KEY,
    OWN_MEMBERSHIP,
    STICKY,
    CLOCK,
    GHOSTS,
)

TITLE = "rtcbot diagnostics"
OVERALL_TIMEOUT_S = 9.5  # every check is done or abandoned by then (the brief says ≤ 10 s)
REQUEST_TIMEOUT_S = 3.0  # one HTTP request
EDIT_INTERVAL_S = 0.5  # at most two progress edits a second
DIAG_EVENT_TYPE = "dev.rtcbot.diag"
ROUND_TRIP_DELAY_MS = 5000
EC_DEFAULT_DELAY_MS = 10_000  # Element Call's default delayed-leave delay
CLOCK_WARN_MS = 2_000
CLOCK_FAIL_MS = 30_000
MIN_SECRET_LEN = 6

DELAYED_FIX = (
    "Set `max_event_delay_duration: 24h` in homeserver.yaml (and keep "
    "`experimental_features.msc4140_max_delayed_events_per_user` above 0), then restart "
    "Synapse. Until then a client that crashes stays in the call as a ghost until its "
    "membership expires, and the bot falls back to a short, refreshed membership."
)
RATE_LIMIT_FIX = (
    "Raise `rc_message` and `rc_delayed_event_mgmt` in homeserver.yaml; Element Call "
    "recommends `rc_delayed_event_mgmt: {per_second: 1, burst_count: 20}` and "
    "`rc_message: {per_second: 0.5, burst_count: 30}`."
)
TRANSPORT_FIX = (
    "In homeserver.yaml set `experimental_features: {msc4143_enabled: true}` and "
    "`matrix_rtc: {transports: [{type: livekit, livekit_service_url: https://…}]}` with the "
    "authorization service's URL."
)
ENABLE_SERVICE_FIX = (
    "Set `auth_service.enabled: true` (with `livekit_url`, `api_key` and `api_secret`) in the "
    "bot's config, or advertise another authorization service."
)
CLOCK_FIX = "Keep both clocks in sync with NTP (chrony or systemd-timesyncd) on the bot's and the homeserver's hosts."


# -- results and rendering (pure) ------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """One line of the report. `cause` and `fix` are shown for warnings and failures,
    `details` only with `--verbose`."""

    name: str
    status: Status
    summary: str
    cause: str = ""
    fix: str = ""
    details: tuple[str, ...] = ()


REDACTED = "[redacted]"
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# Synapse access tokens, delay ids (bearer capabilities) and MAS tokens.
_TOKEN_RE = re.compile(r"\b(?:syt|syd|mat|mct|mar)_[A-Za-z0-9_-]+")
_QUERY_TOKEN_RE = re.compile(r"((?:access_token|token)=)[^&\s\"'<>]+", re.IGNORECASE)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace every known secret, anything JWT- or token-shaped, and token query values."""
    for secret in sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LEN}, key=len)[::-1]:
        text = text.replace(secret, REDACTED)
        escaped = html.escape(secret)
        if escaped != secret:
            text = text.replace(escaped, REDACTED)
    text = _JWT_RE.sub(REDACTED, text)
    text = _TOKEN_RE.sub(REDACTED, text)
    return _QUERY_TOKEN_RE.sub(r"\1" + REDACTED, text)


_CODE_RE = re.compile(r"`([^`]+)`")
_BOLD_RE = re.compile(r"\*\*([^*]+)\*\*")


def _inline_html(text: str) -> str:
    out = html.escape(text, quote=False)
    out = _CODE_RE.sub(r"<code>\1</code>", out)
    return _BOLD_RE.sub(r"<strong>\1</strong>", out)


def _counts(results: Sequence[Check]) -> str:
    parts = []
    for status in (OK, WARN, FAIL, SKIP):
        n = sum(1 for r in results if r.status == status)
        if n:
            parts.append(f"{n} {ICONS[status]}")
    return ", ".join(parts) or "no checks"


def render(
    results: Sequence[Check],
    verbose: bool,
    *,
    pending: Sequence[str] = (),
    order: Sequence[str] = LINES,
    elapsed_s: float | None = None,
    secrets: Iterable[str] = (),
) -> tuple[str, str]:
    """The report as (markdown, html). `pending`: lines still running; `elapsed_s`: the run
    is finished (a final "Finished in N s" line). Everything is redacted last."""
    secrets = tuple(secrets)
    rank = {name: i for i, name in enumerate(order)}
    rows: list[tuple[str, Check | None]] = [(r.name, r) for r in results]
    rows += [(name, None) for name in pending if name not in {r.name for r in results}]
    rows.sort(key=lambda row: rank.get(row[0], len(rank)))

    title = TITLE if elapsed_s is not None else f"{TITLE} (checking…)"
    md: list[str] = [f"**{title}**", ""]
    hl: list[str] = [f"<p><strong>{html.escape(title)}</strong></p>", "<ul>"]
    for name, check in rows:
        if check is None:
            md.append(f"* {PENDING_ICON} **{name}**: checking…")
            hl.append(f"<li>{PENDING_ICON} <strong>{html.escape(name)}</strong>: checking…</li>")
            continue
        summary = redact(check.summary, secrets)
        md.append(f"* {ICONS[check.status]} **{name}**: {summary}")
        sub: list[str] = []
        if check.status in (WARN, FAIL):
            if check.cause:
                sub.append(f"Cause: {redact(check.cause, secrets)}")
            if check.fix:
                sub.append(f"Fix: {redact(check.fix, secrets)}")
        if verbose:
            sub += [redact(d, secrets) for d in check.details]
        md += [f"  * {s}" for s in sub]
        item = f"<li>{ICONS[check.status]} <strong>{html.escape(name)}</strong>: {_inline_html(summary)}"
        if sub:
            item += "<ul>" + "".join(f"<li>{_inline_html(s)}</li>" for s in sub) + "</ul>"
        hl.append(item + "</li>")
    hl.append("</ul>")
    if elapsed_s is not None:
        footer = f"Finished in {elapsed_s:.1f} s: {_counts(results)}."
    else:
        footer = f"Checking… {len(results)} of {len(rows)} done."
    md += ["", footer]
    hl.append(f"<p>{html.escape(footer)}</p>")
    return redact("\n".join(md), secrets), redact("".join(hl), secrets)


# -- small pure helpers (unit-tested) ---------------------------------------------------------
def fmt_ms(ms: float) -> str:
    """A duration for people: 850 ms, 4.2 s, 12 s, 5 min, 24 h, 1 h 30 min."""
    ms = abs(ms)
    if ms < 1000:
        return f"{ms:.0f} ms"
    s = ms / 1000
    if s < 10:
        return f"{s:.1f}".removesuffix(".0") + " s"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    h, rest = divmod(int(s), 3600)
    return f"{h} h" if rest < 60 else f"{h} h {rest // 60} min"


def http_url(livekit_url: str) -> str:
    """The HTTP(S) base of a LiveKit WebSocket URL (ws → http, wss → https)."""
    url = livekit_url.strip().rstrip("/")
    if url.startswith("wss://"):
        return "https://" + url[len("wss://") :]
    if url.startswith("ws://"):
        return "http://" + url[len("ws://") :]
    return url


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


def _error_text(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    text = str(exc).strip()
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return redact(text[:300], secrets)


def _matrix_error(exc: BaseException) -> str:
    if isinstance(exc, MatrixRequestError):
        return f"{exc.http_status} {exc.errcode or ''} {exc.message or ''}".strip()
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return _error_text(exc)


# -- running the checks ----------------------------------------------------------------------
@dataclass
class _Run:
    room_id: RoomID
    verbose: bool
    started: float  # monotonic
    secrets: set[str]
    results: dict[str, Check] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    event_id: EventID | None = None
    sent_before_ms: float = 0
    sent_after_ms: float = 0
    server_info: asyncio.Task[tuple[dict[str, Any], dict[str, Any]]] | None = None
    discovery_done: asyncio.Event = field(default_factory=asyncio.Event)
    service_url: str | None = None
    service_source: str = ""

    def put(self, check: Check) -> None:
        self.results[check.name] = check
        self.changed.set()

    def missing(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if n not in self.results]

    def ordered(self) -> list[Check]:
        return [self.results[n] for n in LINES if n in self.results]


CheckFn = Callable[[_Run], Awaitable[None]]


class Diagnostics:
    def __init__(self, bot: RtcBot) -> None:
        self.bot = bot
        self.client = bot.client
        self.log = logging.getLogger("rtcbot.diagnostics")

    def register(self, router: CommandRouter) -> None:
        router.add(
            "diag",
            "[--verbose]",
            "check delayed events, the authorization service, the SFU and permissions for calls here",
            self.command,
        )

    # -- command -----------------------------------------------------------------------------
    async def command(self, ctx: CommandContext) -> None:
        verbose = any(a.lower() in ("--verbose", "-v", "verbose") for a in ctx.line.args)
        await self.run(ctx.room_id, ctx.event_id, verbose)

    def _secrets(self) -> set[str]:
        s = self.bot.settings
        return {
            x
            for x in (
                s.livekit.api_secret,
                s.auth_service.api_secret,
                str(self.client.api.token or ""),
            )
            if x
        }

    async def run(self, room_id: RoomID, reply_to: EventID, verbose: bool) -> list[Check]:
        """Post the report as a reply to `reply_to`, run every check, edit the report as they
        finish; return the results."""
        run = _Run(room_id, verbose, time.monotonic(), self._secrets())
        md, hl = render([], verbose, pending=LINES, secrets=run.secrets)
        run.sent_before_ms = time.time() * 1000
        run.event_id = await self.bot.notices.reply(room_id, reply_to, md, hl)
        run.sent_after_ms = time.time() * 1000
        run.changed.clear()

        run.server_info = asyncio.create_task(self._server_info())
        groups: list[tuple[tuple[str, ...], float, CheckFn]] = [
            ((DELAYED,), 5, self._check_delayed),
            ((STICKY,), 5, self._check_sticky),
            ((ROUND_TRIP,), 8, self._check_round_trip),
            ((TRANSPORTS, WELL_KNOWN), 5, self._check_discovery),
            ((AUTH_HEALTH, AUTH_ENDPOINTS, OPENID, JWT, SFU), 9, self._check_auth),
            ((PERM_BOT, PERM_MEMBERS), 5, self._check_permissions),
            ((STATE_KEY, OWN_MEMBERSHIP), 6, self._check_own_key),
            ((CLOCK,), 4, self._check_clock),
            ((GHOSTS,), 5, self._check_ghosts),
        ]
        edit_lock = asyncio.Lock()
        updater = asyncio.create_task(self._updater(run, edit_lock))
        tasks = [
            asyncio.create_task(self._guard(run, names, timeout, fn))
            for names, timeout, fn in groups
        ]
        try:
            _, unfinished = await asyncio.wait(tasks, timeout=OVERALL_TIMEOUT_S)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            if not run.server_info.done():
                run.server_info.cancel()
            with contextlib.suppress(BaseException):
                await run.server_info
            elapsed = time.monotonic() - run.started
            async with edit_lock:
                updater.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await updater
                await self._edit(run, elapsed)
        results = run.ordered()
        self._log_summary(run, results, elapsed)
        return results

    async def _updater(self, run: _Run, lock: asyncio.Lock) -> None:
        while True:
            await run.changed.wait()
            async with lock:
                run.changed.clear()
                await self._edit(run, None)
            await asyncio.sleep(EDIT_INTERVAL_S)

    async def _edit(self, run: _Run, elapsed: float | None) -> None:
        assert run.event_id is not None
        md, hl = render(
            run.ordered(),
            run.verbose,
            pending=run.missing(LINES) if elapsed is None else (),
            elapsed_s=elapsed,
            secrets=run.secrets,
        )
        try:
            await self.bot.notices.edit(run.room_id, run.event_id, md, hl)
        except Exception as e:
            self.log.warning("could not update the diagnostics report: %s", _matrix_error(e))

    def _log_summary(self, run: _Run, results: list[Check], elapsed: float) -> None:
        self.log.info(
            "diagnostics in %s finished in %.1f s: %s",
            run.room_id,
            elapsed,
            ", ".join(f"{sum(1 for r in results if r.status == s)} {s}" for s in ICONS),
        )
        for r in results:
            if r.status in (WARN, FAIL):
                self.log.info(
                    "diagnostics in %s: %s %s: %s",
                    run.room_id,
                    r.status,
                    r.name,
                    redact(f"{r.summary} ({r.cause})", run.secrets),
                )

    async def _guard(self, run: _Run, names: tuple[str, ...], timeout: float, fn: CheckFn) -> None:
        """Run one group of checks; whatever it leaves unanswered gets an explanation."""
        try:
            async with asyncio.timeout(timeout):
                await fn(run)
        except TimeoutError:
            for name in run.missing(names):
                run.put(
                    Check(
                        name,
                        FAIL,
                        f"no answer within {timeout:g} s",
                        cause="A server involved in this check is overloaded or unreachable.",
                        fix="Check the homeserver's, the service's and LiveKit's logs.",
                    )
                )
        except asyncio.CancelledError:
            for name in run.missing(names):
                run.put(
                    Check(
                        name,
                        FAIL,
                        f"did not finish within the {OVERALL_TIMEOUT_S:g} s budget",
                        cause="A server involved in this check is overloaded or unreachable.",
                        fix="Check the homeserver's, the service's and LiveKit's logs.",
                    )
                )
            raise
        except Exception as e:
            # The exception's text could quote a URL with a token: redacted, frames only.
            self.log.warning(
                "diagnostics check %s failed: %s\n%s",
                "/".join(names),
                _error_text(e, run.secrets),
                "".join(traceback.format_tb(e.__traceback__)),
            )
            for name in run.missing(names):
                run.put(
                    Check(
                        name,
                        FAIL,
                        "the check itself failed unexpectedly",
                        cause=_error_text(e, run.secrets),
                        fix="This is a bug in rtcbot; the details are in the bot's log.",
                    )
                )
        else:
            for name in run.missing(names):
                run.put(Check(name, SKIP, "not checked"))
        finally:
            if TRANSPORTS in names:
                run.discovery_done.set()

    # -- requests ----------------------------------------------------------------------------
    async def _matrix(
        self, method: Method, path: Any, content: Any = None, query: dict[str, str] | None = None
    ) -> Any:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            return await self.client.api.request(
                method, path, content, query_params=query, retry_count=0
            )

    async def _server_info(self) -> tuple[dict[str, Any], dict[str, Any]]:
        versions, caps = await asyncio.gather(
            self._matrix(Method.GET, Path.versions),
            self._matrix(Method.GET, Path.v3.capabilities),
        )
        return dict(versions or {}), dict(caps or {})

    async def _versions_and_caps(
        self, run: _Run, name: str
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        assert run.server_info is not None
        try:
            return await asyncio.shield(run.server_info)
        except (MatrixRequestError, TimeoutError, aiohttp.ClientError) as e:
            run.put(
                Check(
                    name,
                    FAIL,
                    "the homeserver did not answer /versions or /capabilities",
                    cause=_matrix_error(e),
                    fix="Check that the homeserver is up and reachable from the bot.",
                )
            )
            return None

    # -- 1, 2: delayed events, 15: sticky ------------------------------------------------------
    async def _check_delayed(self, run: _Run) -> None:
        info = await self._versions_and_caps(run, DELAYED)
        if info is not None:
            run.put(check_delayed_support(*info, self.bot.settings.membership.delayed_leave_ms))

    async def _check_sticky(self, run: _Run) -> None:
        info = await self._versions_and_caps(run, STICKY)
        if info is not None:
            run.put(check_sticky(info[0]))

    # -- 3: delayed-event round trip ----------------------------------------------------------
    async def _check_round_trip(self, run: _Run) -> None:
        delayed = DelayedEvents(self.client, request_timeout=REQUEST_TIMEOUT_S)
        key = f"_{self.client.mxid}_{self.client.device_id}_diag"
        details = [f"delayed `{{}}` on `{DIAG_EVENT_TYPE}` / `{key}`"]
        times: list[str] = []
        delay_ms = ROUND_TRIP_DELAY_MS
        delay_id: str | None = None
        step = "schedule"
        try:
            t = time.monotonic()
            try:
                delay_id = await delayed.schedule_state(
                    run.room_id, DIAG_EVENT_TYPE, key, {}, delay_ms
                )
            except DelayTooLarge as e:
                if not e.max_delay_ms or e.max_delay_ms <= 0:
                    raise
                delay_ms = e.max_delay_ms
                delay_id = await delayed.schedule_state(
                    run.room_id, DIAG_EVENT_TYPE, key, {}, delay_ms
                )
            run.secrets.add(delay_id)  # a bearer capability: never shown
            times.append(f"schedule ({fmt_ms(delay_ms)}) {fmt_ms((time.monotonic() - t) * 1000)}")
            for step in ("restart", "cancel"):
                t = time.monotonic()
                await (delayed.restart if step == "restart" else delayed.cancel)(delay_id)
                times.append(f"{step} {fmt_ms((time.monotonic() - t) * 1000)}")
            delay_id = None
        except DelayedEventError as e:
            run.put(self._round_trip_failure(step, e, tuple([*details, *times])))
            return
        finally:
            if delay_id is not None:  # don't leave it to fire
                with contextlib.suppress(DelayedEventError):
                    await delayed.cancel(delay_id)
        run.put(
            Check(
                ROUND_TRIP,
                OK,
                "schedule, restart and cancel work",
                details=(*details, "; ".join(times)),
            )
        )

    def _round_trip_failure(
        self, step: str, e: DelayedEventError, details: tuple[str, ...]
    ) -> Check:
        said = f"the homeserver answered the {step}: {e}"
        if isinstance(e, DelayedEventsUnsupported) and step == "schedule":
            return Check(
                ROUND_TRIP,
                FAIL,
                "the homeserver refuses to schedule delayed events",
                cause=said + " (delayed events are switched off).",
                fix=DELAYED_FIX,
                details=details,
            )
        if isinstance(e, DelayedEventsUnsupported):
            return Check(
                ROUND_TRIP,
                FAIL,
                f"scheduling works, but {step} is not found (M_UNRECOGNIZED)",
                cause=said + ". With Synapse workers, `…/delayed_events/…/cancel` and `/send` "
                "must reach the main process.",
                fix="Route `^/_matrix/client/unstable/org.matrix.msc4140/delayed_events` to the "
                "main Synapse process in the reverse proxy.",
                details=details,
            )
        if isinstance(e, RateLimited):
            return Check(
                ROUND_TRIP,
                FAIL,
                f"rate-limited at {step}",
                cause=said + ".",
                fix=RATE_LIMIT_FIX,
                details=details,
            )
        if isinstance(e, DelayedEventNotFound):
            return Check(
                ROUND_TRIP,
                FAIL,
                f"the homeserver lost the scheduled event before the {step}",
                cause=said + "; a load balancer may send management requests to another worker.",
                fix="Route delayed-event management to the main Synapse process.",
                details=details,
            )
        if isinstance(e, TransientError):
            return Check(
                ROUND_TRIP,
                FAIL,
                f"no usable answer to the {step}",
                cause=said + ".",
                fix="Check the homeserver's health and logs.",
                details=details,
            )
        if isinstance(e, DelayTooLarge):
            return Check(
                ROUND_TRIP,
                FAIL,
                "even a short delay is above the homeserver's maximum",
                cause=said + ".",
                fix="Raise `max_event_delay_duration` in homeserver.yaml (24h is usual).",
                details=details,
            )
        code = f" ({e.status} {e.errcode})" if isinstance(e, RequestRefused) else ""
        return Check(
            ROUND_TRIP,
            FAIL,
            f"the {step} was refused{code}",
            cause=said + ".",
            fix="Check the homeserver's logs for why it refused.",
            details=details,
        )

    # -- 4, 5: discovery ------------------------------------------------------------------------
    async def _check_discovery(self, run: _Run) -> None:
        configured = self.bot.settings.livekit.service_url.rstrip("/")
        if configured:
            run.service_url = configured
            run.service_source = "the bot's config (livekit.service_url)"
            run.discovery_done.set()
        (t_url, t_check), (w_url, w_check, w_where) = await asyncio.gather(
            self._probe_transports(), self._probe_well_known()
        )
        if not configured and (t_url or w_url):
            run.service_url = t_url or w_url
            run.service_source = "the transports endpoint" if t_url else "the well-known rtc_foci"
        run.discovery_done.set()

        if t_url is None and t_check.status != FAIL and w_url:
            t_check = Check(
                TRANSPORTS,
                WARN,
                t_check.summary,
                cause=t_check.cause + " Older clients still find the service in the well-known, "
                "but Element Call (since 2026-08) only asks this endpoint or its own config.",
                fix=t_check.fix,
                details=t_check.details,
            )
        elif t_url is None and not w_url:
            t_check = Check(
                TRANSPORTS,
                FAIL,
                t_check.summary,
                cause=t_check.cause + " Nothing else advertises one either, so clients fail "
                "with MISSING_MATRIX_RTC_TRANSPORT (or _FOCUS).",
                fix=t_check.fix,
                details=t_check.details,
            )
        if w_url and t_url and w_url != t_url:
            w_check = Check(
                WELL_KNOWN,
                WARN,
                f"advertises {w_url}, but the transports endpoint says {t_url}",
                cause="Old clients (well-known) and new ones (endpoint) would use different "
                "authorization services and may end up on different SFUs.",
                fix="Advertise the same `livekit_service_url` in `matrix_rtc.transports` and "
                "`extra_well_known_client_content`.",
                details=w_check.details,
            )
        elif not w_url:
            w_check = Check(
                WELL_KNOWN,
                WARN if t_url else FAIL,
                w_check.summary,
                cause=w_check.cause
                + (
                    " Only older clients (and Element X as a fallback) need it."
                    if t_url
                    else " Nothing else advertises one either."
                ),
                fix="Add `org.matrix.msc4143.rtc_foci: [{type: livekit, livekit_service_url: "
                "https://…}]` to `extra_well_known_client_content` in homeserver.yaml (needs "
                "`public_baseurl`), or serve it from the server name's web server.",
                details=(*w_check.details, f"looked at {w_where}"),
            )
        if configured and not (t_url or w_url):
            extra = "The bot itself uses `livekit.service_url` from its config."
            t_check = replace(t_check, details=(*t_check.details, extra))
        run.put(t_check)
        run.put(w_check)

    async def _probe_transports(self) -> tuple[str | None, Check]:
        try:
            resp = await self._matrix(Method.GET, TRANSPORTS_PATH)
        except MatrixRequestError as e:
            if e.http_status == 404 or e.errcode == "M_UNRECOGNIZED":
                return None, Check(
                    TRANSPORTS,
                    WARN,
                    "not served by the homeserver (404)",
                    cause="MSC4143 is off (`experimental_features.msc4143_enabled`).",
                    fix=TRANSPORT_FIX,
                    details=(f"GET {TRANSPORTS_PATH} → {_matrix_error(e)}",),
                )
            return None, Check(
                TRANSPORTS,
                FAIL,
                f"the homeserver answered {e.http_status}",
                cause=_matrix_error(e),
                fix="Check the homeserver's logs.",
            )
        except (TimeoutError, aiohttp.ClientError) as e:
            return None, Check(
                TRANSPORTS,
                FAIL,
                "no answer from the homeserver",
                cause=_matrix_error(e),
                fix="Check that the homeserver is up and reachable from the bot.",
            )
        entries = resp.get("rtc_transports") if isinstance(resp, dict) else None
        url = first_livekit_url(entries)
        listed = tuple(
            f"{t.get('type')}: {t.get('livekit_service_url') or t.get('url') or '?'}"
            for t in (entries or [])
            if isinstance(t, dict)
        )
        if url:
            return url, Check(TRANSPORTS, OK, f"advertises {url}", details=listed)
        return None, Check(
            TRANSPORTS,
            WARN,
            "served, but lists no LiveKit transport",
            cause="`matrix_rtc.transports` in homeserver.yaml is empty or has no livekit entry "
            "with a `livekit_service_url`.",
            fix=TRANSPORT_FIX,
            details=listed or ("answer: {}",),
        )

    async def _probe_well_known(self) -> tuple[str | None, Check, str]:
        base = str(self.client.api.base_url).rstrip("/")
        server_name = str(self.client.mxid).split(":", 1)[1]
        candidates = [f"https://{server_name}", base]
        candidates = list(dict.fromkeys(candidates))
        answers = await asyncio.gather(*(self._fetch_well_known(c) for c in candidates))
        notes = [
            f"{c}/.well-known/matrix/client: {a[1]}"
            for c, a in zip(candidates, answers, strict=True)
        ]
        for cand, (url, _) in zip(candidates, answers, strict=True):
            if url:
                return (
                    url,
                    Check(WELL_KNOWN, OK, f"advertises {url}", details=tuple(notes)),
                    cand,
                )
        return (
            None,
            Check(
                WELL_KNOWN,
                WARN,
                "no `org.matrix.msc4143.rtc_foci` in the client well-known",
                cause="The homeserver's `.well-known/matrix/client` names no LiveKit service.",
                details=tuple(notes),
            ),
            " and ".join(candidates),
        )

    async def _fetch_well_known(self, base: str) -> tuple[str | None, str]:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                async with self.bot.http.get(
                    f"{base}/.well-known/matrix/client", allow_redirects=True
                ) as resp:
                    if resp.status != 200:
                        return None, f"HTTP {resp.status}"
                    data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            return None, _error_text(e)
        if not isinstance(data, dict):
            return None, "not a JSON object"
        url = first_livekit_url(data.get(RTC_FOCI_KEY))
        return url, (f"rtc_foci → {url}" if url else "no livekit rtc_foci")

    # -- 6–11: authorization service and SFU ---------------------------------------------------
    async def _check_auth(self, run: _Run) -> None:
        await run.discovery_done.wait()
        url = run.service_url
        if not url:
            run.put(
                Check(
                    AUTH_HEALTH,
                    FAIL,
                    "no authorization service is known",
                    cause="Neither the transports endpoint nor the well-known advertises one, "
                    "and `livekit.service_url` is empty in the bot's config.",
                    fix=TRANSPORT_FIX,
                )
            )
            for name in (AUTH_ENDPOINTS, OPENID, JWT):
                run.put(Check(name, SKIP, "no authorization service to ask"))
            await self._check_sfu(run, None)
            return
        source = f"service {url} (from {run.service_source})"
        health, endpoints = await asyncio.gather(
            self._check_health(url, source), self._check_endpoints(url)
        )
        run.put(health)
        run.put(endpoints)
        disabled = "disabled" in health.summary
        access = await self._check_openid(run, url, source, disabled)
        if access is None:
            run.put(Check(JWT, SKIP, "no token to inspect (see above)"))
            await self._check_sfu(run, None)
            return
        claims = decode_jwt_claims(access.jwt)
        expected_room = livekit_room_alias(run.room_id, DEFAULT_SLOT_ID)
        if access.via == "get_token":
            expected_id = livekit_identity(self.client.mxid, self._device(), self._member_id())
        else:
            expected_id = legacy_identity(self.client.mxid, self._device())
        run.put(check_jwt_claims(claims, expected_room, expected_id, time.time()))
        await self._check_sfu(run, access)

    def _device(self) -> str:
        return str(self.client.device_id or "RTCBOT")

    def _member_id(self) -> str:
        return f"{self._device()}-diag"

    async def _http(
        self, method: str, url: str, json_body: Any = None
    ) -> tuple[int, dict[str, Any], str]:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            async with self.bot.http.request(
                method, url, json=json_body, allow_redirects=False
            ) as resp:
                raw = await resp.content.read(16 * 1024)
                status = resp.status
        text = raw.decode("utf-8", errors="replace")
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        return status, body if isinstance(body, dict) else {}, text

    async def _check_health(self, url: str, source: str) -> Check:
        t = time.monotonic()
        try:
            status, body, _ = await self._http("GET", f"{url}/healthz")
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            return Check(
                AUTH_HEALTH,
                FAIL,
                f"{url} is unreachable",
                cause=f"{_error_text(e)}.",
                fix="Check the URL, DNS, TLS and firewall: clients and the bot must reach "
                "the service.",
                details=(source,),
            )
        details = (source, f"GET /healthz → {status} in {fmt_ms((time.monotonic() - t) * 1000)}")
        if status == 200:
            return Check(AUTH_HEALTH, OK, f"{url} is up", details=details)
        error = str(body.get("error") or "")
        if status == 404 and "disabled" in error.lower():
            return Check(
                AUTH_HEALTH,
                FAIL,
                f"{url} is rtcbot's own authorization service, and it is disabled",
                cause=f"It answers 404: {error}.",
                fix=ENABLE_SERVICE_FIX,
                details=details,
            )
        if status == 404:
            return Check(
                AUTH_HEALTH,
                FAIL,
                f"nothing answers {url}/healthz (404)",
                cause="The URL is wrong, or a reverse proxy does not strip its path prefix "
                "(e.g. `/livekit/jwt/`) before passing requests on (element-hq/lk-jwt-service#117).",
                fix="Point `livekit_service_url` at the service's root, and strip the prefix in "
                "the proxy.",
                details=details,
            )
        return Check(
            AUTH_HEALTH,
            FAIL,
            f"{url}/healthz answered {status}",
            cause=f"{body.get('errcode') or ''} {error}".strip() or f"HTTP {status}",
            fix="Check the authorization service's logs.",
            details=details,
        )

    async def _check_endpoints(self, url: str) -> Check:
        """Checklist 7: `{}` to /get_token: 400 → the endpoint exists; 404 → older service."""
        try:
            status, body, _ = await self._http("POST", f"{url}/get_token", {})
            detail = f"POST /get_token {{}} → {status} {body.get('errcode') or ''}".strip()
            if status == 400:
                return Check(
                    AUTH_ENDPOINTS,
                    OK,
                    "serves `/get_token` (Matrix 2.0) and `/sfu/get`",
                    details=(detail,),
                )
            if status == 404:
                old_status, old_body, _ = await self._http("POST", f"{url}/sfu/get", {})
                detail2 = (
                    f"POST /sfu/get {{}} → {old_status} {old_body.get('errcode') or ''}".strip()
                )
                if old_status == 400:
                    return Check(
                        AUTH_ENDPOINTS,
                        WARN,
                        "only the legacy `/sfu/get` (service older than v0.4.0)",
                        cause="Clients in Element Call's matrix_2_0 mode need `/get_token`; "
                        "others fall back to `/sfu/get`.",
                        fix="Upgrade lk-jwt-service to a current release.",
                        details=(detail, detail2),
                    )
                error = str(body.get("error") or old_body.get("error") or "")
                return Check(
                    AUTH_ENDPOINTS,
                    FAIL,
                    "neither `/get_token` nor `/sfu/get` exists there (404)",
                    cause=(
                        f"The service says: {error}."
                        if error
                        else "The URL does not point at a MatrixRTC authorization service."
                    ),
                    fix=ENABLE_SERVICE_FIX
                    if "disabled" in error.lower()
                    else "Fix the advertised `livekit_service_url` (see the line above).",
                    details=(detail, detail2),
                )
            return Check(
                AUTH_ENDPOINTS,
                WARN,
                f"unexpected answer {status} to an empty token request",
                cause=str(body.get("error") or "expected 400 M_BAD_JSON"),
                fix="Check that this is a MatrixRTC authorization service (lk-jwt-service).",
                details=(detail,),
            )
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            return Check(
                AUTH_ENDPOINTS,
                FAIL,
                "unreachable",
                cause=f"{_error_text(e)}.",
                fix="See the authorization service line above.",
            )

    async def _check_openid(
        self, run: _Run, url: str, source: str, disabled: bool = False
    ) -> SfuAccess | None:
        """Checklist 8 (and 10): an OpenID token from the homeserver, exchanged for a JWT."""
        t = time.monotonic()
        try:
            openid = await self._matrix(
                Method.POST, Path.v3.user[self.client.mxid].openid.request_token, {}
            )
        except (MatrixRequestError, TimeoutError, aiohttp.ClientError) as e:
            run.put(
                Check(
                    OPENID,
                    FAIL,
                    "the homeserver gave the bot no OpenID token",
                    cause=_matrix_error(e),
                    fix="Check the homeserver's logs.",
                    details=(source,),
                )
            )
            return None
        token = str((openid or {}).get("access_token") or "")
        if token:
            run.secrets.add(token)
        t_openid = time.monotonic() - t
        t = time.monotonic()
        client = AuthServiceClient(self.bot.http, timeout=4.0, log=self.log)
        try:
            access = await client.get_access(
                url, run.room_id, openid, self.client.mxid, self._device(), self._member_id()
            )
        except SfuAuthError as e:
            run.put(self._openid_failure(e, (source,), run.secrets, disabled))
            return None
        run.secrets.add(access.jwt)
        endpoint = "/get_token" if access.via == "get_token" else "/sfu/get"
        run.put(
            Check(
                OPENID,
                OK,
                f"the service verified the bot's OpenID token and issued a LiveKit token via "
                f"`{endpoint}`",
                details=(
                    source,
                    f"OpenID token from the homeserver in {fmt_ms(t_openid * 1000)} "
                    f"(server name {(openid or {}).get('matrix_server_name')})",
                    f"LiveKit token in {fmt_ms((time.monotonic() - t) * 1000)}",
                    f"LiveKit URL {access.url}",
                ),
            )
        )
        return access

    def _openid_failure(
        self, e: SfuAuthError, details: tuple[str, ...], secrets: set[str], disabled: bool
    ) -> Check:
        said = redact(e.message, secrets)
        if e.kind == "not_found" and disabled:
            return Check(
                OPENID,
                FAIL,
                "no LiveKit token: rtcbot's authorization service is disabled",
                cause="It answers 404 on `/get_token` and `/sfu/get` while "
                "`auth_service.enabled` is false.",
                fix=ENABLE_SERVICE_FIX,
                details=details,
            )
        server_name = str(self.client.mxid).split(":", 1)[1]
        if e.kind == "unauthorised":
            return Check(
                OPENID,
                FAIL,
                f"the service refused the bot's OpenID token ({e.status})",
                cause=f"{said} It checks the token at `https://{server_name}/_matrix/federation/"
                "v1/openid/userinfo`: the homeserver needs a `federation` or `openid` listener "
                "reachable from the service, a correct `.well-known/matrix/server` and valid TLS.",
                fix="Expose the openid/federation listener to the service (for rtcbot's own "
                "service, set `auth_service.homeserver_urls`), and allow this homeserver.",
                details=details,
            )
        if e.kind == "server_error" and "create room" in e.message.lower():
            return Check(
                OPENID,
                FAIL,
                "the service could not create the LiveKit room",
                cause=f"{said.split(';')[0]}. Its LiveKit URL, API key or secret is wrong, or "
                "LiveKit is down "
                "(element-hq/lk-jwt-service#137, #177).",
                fix="Check the service's LIVEKIT_URL, LIVEKIT_KEY and LIVEKIT_SECRET (for "
                "rtcbot's own service: `auth_service.livekit_url`, `api_key`, `api_secret`) "
                "against LiveKit's `keys` and port.",
                details=details,
            )
        fixes = {
            "not_found": "Fix the advertised `livekit_service_url` (see the lines above).",
            "unreachable": "Make the service reachable from the bot (URL, DNS, TLS, firewall).",
            "bad_request": "The service and the bot speak different protocol versions "
            "(400 M_NOT_JSON: unknown fields); upgrade the service.",
            "bad_response": "Check that the URL points at a MatrixRTC authorization service.",
            "server_error": "Check the authorization service's and LiveKit's logs.",
        }
        return Check(
            OPENID,
            FAIL,
            f"no LiveKit token from the service ({e.kind.replace('_', ' ')})",
            cause=said,
            fix=fixes.get(e.kind, "Check the authorization service's logs."),
            details=details,
        )

    async def _check_sfu(self, run: _Run, access: SfuAccess | None) -> None:
        """Checklist 11: LiveKit accepts the token at `/rtc/validate` (URL never logged)."""
        how = ""
        if access is None:
            lk = self.bot.settings.livekit
            if not (lk.url and lk.api_key and lk.api_secret):
                run.put(Check(SFU, SKIP, "no LiveKit token to test with (see above)"))
                return
            access = mint_local_token(
                lk,
                livekit_room_alias(run.room_id, DEFAULT_SLOT_ID),
                f"{self.client.mxid}:{self._device()}:diag",
                "recorder",
                ttl=timedelta(minutes=2),
            )
            run.secrets.add(access.jwt)
            how = " (tested with a token the bot minted from `livekit.api_key`)"
        base = http_url(access.url)
        t = time.monotonic()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                async with self.bot.http.get(
                    f"{base}/rtc/validate",
                    params={"access_token": access.jwt},
                    allow_redirects=False,
                ) as resp:
                    status = resp.status
                    text = (await resp.content.read(2048)).decode("utf-8", errors="replace")
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            reason = "no answer in time" if isinstance(e, TimeoutError) else _error_text(e)
            local = any(h in access.url for h in ("localhost", "127.0.0.1", "[::1]"))
            run.put(
                Check(
                    SFU,
                    FAIL,
                    f"LiveKit at {access.url} is unreachable{how}",
                    cause=redact(reason, run.secrets)
                    + "."
                    + (
                        " The URL is a local address: clients elsewhere cannot reach it."
                        if local
                        else ""
                    ),
                    fix="Check the LiveKit URL the service hands out (LIVEKIT_URL; for rtcbot's "
                    "own service `auth_service.livekit_url`), DNS and TLS, and that the reverse "
                    "proxy forwards `/rtc` and `/rtc/v1` with WebSocket upgrades.",
                )
            )
            return
        text = redact(text.strip()[:200], run.secrets)
        details = (
            f"GET {base}/rtc/validate → {status} {text} in {fmt_ms((time.monotonic() - t) * 1000)}",
        )
        if status == 200:
            run.put(
                Check(SFU, OK, f"LiveKit at {access.url} accepts the token{how}", details=details)
            )
        elif status == 401:
            run.put(
                Check(
                    SFU,
                    FAIL,
                    f"LiveKit at {access.url} rejects the token{how}",
                    cause=f"401 {text}: the token is signed with an API key or secret that this "
                    "LiveKit server does not know.",
                    fix="Use the same key pair in the authorization service and in LiveKit's "
                    "`keys`, and check that the service hands out the right LiveKit URL.",
                    details=details,
                )
            )
        elif status == 404 and "room" in text.lower():
            run.put(
                Check(
                    SFU,
                    WARN,
                    f"LiveKit at {access.url} is reachable, but the call's room does not exist yet{how}",
                    cause="The bot has restricted access and LiveKit has `room.auto_create: false`: "
                    "it can only join once a full-access member has started the call.",
                    fix="Give the bot's homeserver full access in the authorization service.",
                    details=details,
                )
            )
        else:
            run.put(
                Check(
                    SFU,
                    FAIL,
                    f"{base}/rtc/validate answered {status}{how}",
                    cause="A reverse proxy in front of LiveKit does not forward `/rtc/validate` "
                    "(or this is not LiveKit)."
                    if status == 404
                    else f"HTTP {status}: {text}",
                    fix="Forward `/rtc` and `/rtc/v1` (with WebSocket upgrades) to LiveKit.",
                    details=details,
                )
            )

    # -- 12: power levels ---------------------------------------------------------------------
    async def _check_permissions(self, run: _Run) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S + 1):
                perm = await check_call_permission(
                    self.client, run.room_id, UserID(self.client.mxid)
                )
        except (MatrixRequestError, TimeoutError, aiohttp.ClientError, AssertionError) as e:
            for name in (PERM_BOT, PERM_MEMBERS):
                run.put(
                    Check(
                        name,
                        FAIL,
                        "could not read the room's power levels",
                        cause=_matrix_error(e),
                        fix="Check that the bot is joined to this room.",
                    )
                )
            return
        details = (
            f"`{CALL_MEMBER_TYPE}` needs {perm.needed}; the bot has {perm.bot_level}; "
            f"users_default is {perm.member_level}",
        )
        fix = FIX_HINT.format(member_level=perm.member_level)
        if perm.bot_can_join:
            run.put(
                Check(
                    PERM_BOT,
                    OK,
                    f"the bot (level {perm.bot_level}) may send call membership (needs {perm.needed})",
                    details=details,
                )
            )
        else:
            run.put(
                Check(
                    PERM_BOT,
                    FAIL,
                    f"the bot can't join calls here: call membership needs level {perm.needed}, "
                    f"the bot has {perm.bot_level}",
                    cause=f"Sending `{CALL_MEMBER_TYPE}` needs power level {perm.needed} (its "
                    "own entry in the power levels, or `state_default`); the homeserver answers "
                    "403 `user_level < send_level`.",
                    fix=f"{fix} Or give the bot power level {perm.needed}.",
                    details=details,
                )
            )
        if perm.members_can_join:
            run.put(
                Check(
                    PERM_MEMBERS,
                    OK,
                    f"ordinary members (level {perm.member_level}) may join calls",
                    details=details,
                )
            )
        else:
            run.put(
                Check(
                    PERM_MEMBERS,
                    FAIL,
                    f"ordinary members (level {perm.member_level}) can't join calls: call "
                    f"membership needs level {perm.needed}",
                    cause=f"Only members with power level {perm.needed} or more may send "
                    f"`{CALL_MEMBER_TYPE}`; Element hides or fails 'Join' for everyone else.",
                    fix=fix,
                    details=details,
                )
            )

    # -- 13, 14 (and 17): the bot's own state key and membership -------------------------------
    async def _check_own_key(self, run: _Run) -> None:
        key = make_state_key(self.client.mxid, self._device())
        pub = self.bot.calls.publishers.get(run.room_id)
        in_call = pub is not None and pub.state not in (State.IDLE, State.FAILED)
        event = await self._own_state(run.room_id, key)
        parsed = parse_state_event(event) if event else None

        if in_call:
            assert pub is not None
            st = pub.status()
            if parsed is None or not parsed.ok:
                why = (
                    "absent" if parsed is None or parsed.left else f"unreadable ({parsed.reason})"
                )
                run.put(
                    Check(
                        STATE_KEY,
                        WARN,
                        f"the bot's key `{key}` holds no membership",
                        cause="See the next line.",
                    )
                )
                run.put(
                    Check(
                        OWN_MEMBERSHIP,
                        FAIL,
                        f"the bot is {st.state.value}, but its membership is {why} in the room state",
                        cause="Someone overwrote it, or the delayed leave fired after missed "
                        "heartbeats; the bot rejoins by itself.",
                        fix="If this repeats, look at the heartbeat errors in `!call status` "
                        "and the rate limits (`rc_delayed_event_mgmt`).",
                        details=(f"last error: {st.last_error}",) if st.last_error else (),
                    )
                )
                return
            run.put(Check(STATE_KEY, OK, f"the bot's key `{key}` holds its membership"))
            run.put(self._own_membership(parsed.memberships[0], st))
            return

        if parsed is not None and parsed.ok:
            run.put(
                Check(
                    STATE_KEY,
                    OK,
                    f"the bot's key `{key}` holds an earlier membership of the bot",
                )
            )
            m = parsed.memberships[0]
            expired = m.is_expired(int(time.time() * 1000))
            run.put(
                Check(
                    OWN_MEMBERSHIP,
                    WARN,
                    "the bot is not in the call, but an old membership of it is in the room state"
                    + (" (expired)" if expired else ""),
                    cause="Left over from a run that ended without leaving (crash without "
                    "delayed events).",
                    fix="`!call join` then `!call leave` clears it; clients ignore it once it "
                    "has expired.",
                )
            )
            return
        # Not in a call: prove the key is accepted by writing "not in the call" (`{}`) to it.
        try:
            delayed = DelayedEvents(self.client, request_timeout=REQUEST_TIMEOUT_S)
            await delayed.put_state(run.room_id, CALL_MEMBER_TYPE, key, {})
        except DelayedEventError as e:
            run.put(self._state_key_failure(key, e))
        else:
            run.put(
                Check(
                    STATE_KEY,
                    OK,
                    f"the homeserver accepts the bot's key `{key}`",
                    details=("wrote `{}` (not in the call) to it",),
                )
            )
        run.put(
            Check(
                OWN_MEMBERSHIP,
                SKIP,
                "the bot is not in a call here (`!call join` first to check it)",
            )
        )

    async def _own_state(self, room_id: RoomID, key: str) -> dict[str, Any] | None:
        try:
            evt = await self._matrix(
                Method.GET,
                Path.v3.rooms[room_id].state[CALL_MEMBER_TYPE][key],
                query={"format": "event"},
            )
        except MatrixRequestError as e:
            if e.http_status == 404:
                return None
            raise
        if not isinstance(evt, dict):
            return None
        if "content" in evt and "type" in evt:
            return evt
        # A server that ignores format=event answers with the content alone.
        return {
            "type": CALL_MEMBER_TYPE,
            "state_key": key,
            "sender": self.client.mxid,
            "content": evt,
            "origin_server_ts": int(time.time() * 1000),
        }

    def _state_key_failure(self, key: str, e: DelayedEventError) -> Check:
        said = f"The homeserver answered: {e}"
        if isinstance(e, RequestRefused) and e.status == 403 and "level" in str(e):
            return Check(
                STATE_KEY,
                FAIL,
                f"the bot may not write its key `{key}`: its power level is too low",
                cause=f"{said}.",
                fix="See the bot's call permission line above.",
            )
        if isinstance(e, RequestRefused) and e.status == 403:
            return Check(
                STATE_KEY,
                FAIL,
                f"the homeserver treats `{key}` as someone else's state key",
                cause=f"{said}. This room version does not let users own `_@user_…` keys.",
                fix="Upgrade the room to a current room version.",
            )
        if isinstance(e, RequestRefused) and e.status == 400:
            return Check(
                STATE_KEY,
                FAIL,
                f"the homeserver rejects the key `{key}` as malformed",
                cause=f"{said}. In MSC3757 rooms owned keys must be `@user:server_…` exactly.",
                fix="Report this with the room version to rtcbot's developers.",
            )
        return Check(
            STATE_KEY,
            FAIL,
            f"writing `{key}` failed",
            cause=f"{said}.",
            fix="Check the homeserver's logs.",
        )

    def _own_membership(self, m: Any, st: Any) -> Check:
        now = int(time.time() * 1000)
        details = [
            f"state {st.state.value}, mode {st.mode.value if st.mode else '-'}",
            f"heartbeats: {st.heartbeats_ok} ok, {st.heartbeat_failures} failed; rejoins {st.rejoins}",
        ]
        if st.last_error:
            details.append(f"last error: {st.last_error}")
        if m.is_expired(now):
            return Check(
                OWN_MEMBERSHIP,
                FAIL,
                "the bot's membership is in the room state but already expired",
                cause="Its `expires` is counted from `created_ts`; a clock difference between "
                "the bot and the homeserver or a wrong `created_ts` makes it look expired.",
                fix=CLOCK_FIX,
                details=tuple(details),
            )
        left = f"expires in {fmt_ms(m.expires_at - now)}" if m.expires_at else "no expiry"
        if st.mode == LeaveMode.EXPIRING:
            return Check(
                OWN_MEMBERSHIP,
                WARN,
                f"visible ({left}), but without a delayed leave",
                cause=f"{st.fallback_reason or 'no delayed events'}: if the bot crashes, it stays "
                "in the call as a ghost until the membership expires.",
                fix=DELAYED_FIX,
                details=tuple(details),
            )
        if not st.has_delayed_leave or (st.heartbeat_failures and st.last_error):
            return Check(
                OWN_MEMBERSHIP,
                WARN,
                f"visible ({left}), but the delayed-leave heartbeat is unhealthy",
                cause=st.last_error or "the delayed leave is missing",
                fix="Check rate limits (`rc_delayed_event_mgmt`) and the homeserver's load.",
                details=tuple(details),
            )
        return Check(
            OWN_MEMBERSHIP,
            OK,
            f"visible, {left}; delayed leave {fmt_ms(st.delay_ms or 0)}, "
            f"{st.heartbeats_ok} heartbeat{'' if st.heartbeats_ok == 1 else 's'} ok",
            details=tuple(details),
        )

    # -- clock and ghosts ---------------------------------------------------------------------
    async def _check_clock(self, run: _Run) -> None:
        assert run.event_id is not None
        evt = await self._matrix(Method.GET, Path.v3.rooms[run.room_id].event[run.event_id])
        ots = evt.get("origin_server_ts") if isinstance(evt, dict) else None
        if not isinstance(ots, int):
            run.put(Check(CLOCK, SKIP, "the homeserver gave the report no timestamp"))
            return
        midpoint = (run.sent_before_ms + run.sent_after_ms) / 2
        run.put(check_clock(ots - midpoint, run.sent_after_ms - run.sent_before_ms))

    async def _check_ghosts(self, run: _Run) -> None:
        calls = await self.bot.calls.room(run.room_id)
        now = int(time.time() * 1000)
        ghosts = calls.ghosts(now)
        if not ghosts:
            run.put(Check(GHOSTS, OK, "none"))
            return
        names = [f"{g.user_id} ({g.device_id})" for g in ghosts]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        run.put(
            Check(
                GHOSTS,
                WARN,
                f"{len(ghosts)} expired membership{'s' if len(ghosts) != 1 else ''} still in the "
                f"room state: {shown}",
                cause="Clients that crashed or lost the network without a delayed leave (the "
                "homeserver lacks delayed events, or the client did not use them). Clients "
                "ignore expired memberships.",
                fix="Nothing breaks; they go away when those devices join again. To avoid new "
                "ones, enable delayed events on the homeserver.",
                details=tuple(
                    f"{g.user_id} / {g.device_id}: expired {fmt_ms(now - (g.expires_at or now))} ago"
                    for g in ghosts
                ),
            )
        )
