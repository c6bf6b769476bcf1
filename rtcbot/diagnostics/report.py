"""The report of `!call diag`: its lines, their statuses, rendering and redaction (all pure).

Secrets policy: the report and the log never carry a secret, token or JWT; whatever is
rendered goes through `redact` last, with every secret the run has seen.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from mautrix.errors import MatrixRequestError

from ..redaction import redact

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
HS_TOKENS = "Homeserver token endpoint"
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
CRYPTO = "End-to-end encryption"
MEDIA_KEYS = "Call media keys"
SLOT = "Call slot"
FUNCTIONAL = "Functional members"
LINES: Final = (
    DELAYED,
    ROUND_TRIP,
    TRANSPORTS,
    WELL_KNOWN,
    HS_TOKENS,
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
    SLOT,
    FUNCTIONAL,
    CLOCK,
    GHOSTS,
    CRYPTO,
    MEDIA_KEYS,
)

TITLE = "rtcbot diagnostics"

# Fixes shown by more than one check.
DELAYED_FIX = (
    "Set `max_event_delay_duration: 24h` in homeserver.yaml (and keep "
    "`experimental_features.msc4140_max_delayed_events_per_user` above 0), then restart "
    "Synapse. Until then a client that crashes stays in the call as a ghost until its "
    "membership expires, and the bot falls back to a short, refreshed membership."
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


# -- rendering --------------------------------------------------------------------------------
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


# -- small formatters -------------------------------------------------------------------------
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


def error_text(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """An exception for the report: its type and (redacted, shortened) message."""
    text = str(exc).strip()
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return redact(text[:300], secrets)


def matrix_error(exc: BaseException) -> str:
    """What the homeserver answered (status, errcode, message), or why it did not."""
    if isinstance(exc, MatrixRequestError):
        return f"{exc.http_status} {exc.errcode or ''} {exc.message or ''}".strip()
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return error_text(exc)
