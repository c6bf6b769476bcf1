"""`!call diag` report: rendering, statuses, and redaction of anything secret."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time

import pytest
from mautrix.types import RoomID

from rtcbot.diagnostics import (
    CLOCK,
    DELAYED,
    GHOSTS,
    ICONS,
    JWT,
    LINES,
    PENDING_ICON,
    PERM_BOT,
    PERM_MEMBERS,
    REDACTED,
    SFU,
    STICKY,
    Check,
    CheckRunner,
    RunState,
    check_clock,
    check_delayed_support,
    check_jwt_claims,
    check_sticky,
    fmt_ms,
    http_url,
    redact,
    render,
)

SECRET = "Zq3xV8kP2mN7bL4cR9tY1wE6uI0oA5sD-_jH"
FAKE_JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJAYm90OmxvY2FsaG9zdCJ9."
    "c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU"
)


def _jwt(claims: dict[str, object]) -> str:
    def seg(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{seg({'alg': 'HS256', 'typ': 'JWT'})}.{seg(claims)}.c2ln"


def lines_of(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("* ")]


# -- rendering ---------------------------------------------------------------------------------
def test_each_status_has_its_icon_and_only_problems_show_cause_and_fix() -> None:
    results = [
        Check(DELAYED, "ok", "advertised", cause="hidden cause", fix="hidden fix"),
        Check(STICKY, "warn", "not supported", cause="msc4354 off", fix="turn it on"),
        Check(SFU, "fail", "unreachable", cause="connection refused", fix="check the URL"),
        Check(GHOSTS, "skip", "not applicable"),
    ]
    md, html = render(results, verbose=False, elapsed_s=1.234)
    rows = lines_of(md)
    assert rows == [
        f"* {ICONS['ok']} **{DELAYED}**: advertised",
        f"* {ICONS['fail']} **{SFU}**: unreachable",
        f"* {ICONS['warn']} **{STICKY}**: not supported",
        f"* {ICONS['skip']} **{GHOSTS}**: not applicable",
    ]
    assert "  * Cause: msc4354 off" in md and "  * Fix: turn it on" in md
    assert "  * Cause: connection refused" in md and "  * Fix: check the URL" in md
    assert "hidden cause" not in md and "hidden fix" not in md
    assert md.rstrip().endswith("Finished in 1.2 s: 1 ✅, 1 ⚠️, 1 ❌, 1 ➖.")
    assert (
        "<li>❌ <strong>SFU reachable</strong>: unreachable<ul><li>Cause: connection refused"
        in html
    )
    assert html.endswith("<p>Finished in 1.2 s: 1 ✅, 1 ⚠️, 1 ❌, 1 ➖.</p>")


def test_lines_follow_the_fixed_order_whatever_order_they_finish_in() -> None:
    results = [Check(GHOSTS, "ok", "none"), Check(DELAYED, "ok", "fine"), Check(CLOCK, "ok", "ok")]
    md, _ = render(results, verbose=False, elapsed_s=0.5)
    names = [re.search(r"\*\*(.+?)\*\*", row).group(1) for row in lines_of(md)]  # type: ignore[union-attr]
    assert names == [DELAYED, CLOCK, GHOSTS]


def test_pending_lines_show_an_hourglass_and_no_finished_footer() -> None:
    md, html = render([Check(DELAYED, "ok", "fine")], verbose=False, pending=LINES)
    rows = lines_of(md)
    assert len(rows) == len(LINES)
    assert rows[0].startswith(f"* {ICONS['ok']}")
    assert all(r.startswith(f"* {PENDING_ICON}") for r in rows[1:])
    assert "Finished" not in md and "checking…" in md
    assert f"Checking… 1 of {len(LINES)} done." in md
    assert "(checking…)" in html


def test_details_only_when_verbose() -> None:
    results = [Check(DELAYED, "ok", "advertised", details=("max_delay_ms = 86400000",))]
    quiet, _ = render(results, verbose=False, elapsed_s=1)
    loud, loud_html = render(results, verbose=True, elapsed_s=1)
    assert "max_delay_ms" not in quiet
    assert "  * max_delay_ms = 86400000" in loud
    assert "<li>max_delay_ms = 86400000</li>" in loud_html


def test_html_escapes_foreign_text_and_renders_code() -> None:
    results = [Check(GHOSTS, "warn", "ghost `<b>@x:y</b>` & co", cause="<script>", fix="f")]
    _, html = render(results, verbose=False, elapsed_s=1)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<code>&lt;b&gt;@x:y&lt;/b&gt;</code> &amp; co" in html


# -- redaction ---------------------------------------------------------------------------------
def test_configured_secrets_jwts_and_tokens_are_redacted_everywhere() -> None:
    results = [
        Check(
            DELAYED, "fail", f"secret {SECRET}", cause=f"jwt {FAKE_JWT}", fix="syt_Ym90_abcDEF_123"
        ),
        Check(SFU, "ok", "fine", details=(f"GET /rtc/validate?access_token={FAKE_JWT[:20]}xyz",)),
        Check(JWT, "warn", "ok", details=("token=abcdefgh&x=1", "syd_hiHOLPOBDAuqPhycQbFP")),
    ]
    for verbose in (False, True):
        md, html = render(results, verbose, elapsed_s=1, secrets=[SECRET])
        for out in (md, html):
            assert SECRET not in out
            assert "eyJ" not in out
            assert "syt_" not in out and "syd_" not in out
            assert "abcdefgh" not in out
            assert REDACTED in out


def test_secret_is_redacted_even_when_html_escaped_or_inside_other_text() -> None:
    secret = "p&ss<word>123"
    md, html = render(
        [Check(DELAYED, "fail", f"x{secret}y", cause="c", fix="f")],
        verbose=True,
        elapsed_s=1,
        secrets=[secret],
    )
    assert secret not in md and "p&amp;ss&lt;word&gt;123" not in html and secret not in html


def test_redact_keeps_ordinary_text_and_ignores_tiny_secrets() -> None:
    text = "LiveKit at ws://127.0.0.1:7880 accepts the token (room abc)"
    assert redact(text, ["", "a", "abc"]) == text
    assert redact(f"jwt={FAKE_JWT}!", []) == f"jwt={REDACTED}!"
    assert redact(f"?access_token={SECRET}&b=2") == f"?access_token={REDACTED}&b=2"


# -- check helpers -----------------------------------------------------------------------------
def test_delayed_support_statuses() -> None:
    on = {"unstable_features": {"org.matrix.msc4140": True}}
    caps = {"capabilities": {"org.matrix.msc4140.delayed_events": {"max_delay_ms": 86_400_000}}}
    assert check_delayed_support(on, caps, 8000).status == "ok"
    off = check_delayed_support({"unstable_features": {}}, {"capabilities": {}}, 8000)
    assert off.status == "fail" and "max_event_delay_duration" in off.cause + off.fix
    zero = {"capabilities": {"org.matrix.msc4140.delayed_events": {"max_delay_ms": 0}}}
    assert check_delayed_support(on, zero, 8000).status == "fail"
    small = {"capabilities": {"org.matrix.msc4140.delayed_events": {"max_delay_ms": 5000}}}
    assert check_delayed_support(on, small, 8000).status == "warn"


def test_sticky_statuses() -> None:
    assert check_sticky({"unstable_features": {"org.matrix.msc4354": True}}).status == "ok"
    assert check_sticky({}).status == "warn"


@pytest.mark.parametrize(
    ("skew", "rtt", "status"),
    [
        (10, 20, "ok"),
        (-1500, 10, "ok"),
        (5000, 10, "warn"),
        (-5000, 10, "warn"),
        (120_000, 10, "fail"),
    ],
)
def test_clock_skew_thresholds(skew: float, rtt: float, status: str) -> None:
    check = check_clock(skew, rtt)
    assert check.name == CLOCK and check.status == status
    if status != "ok":
        assert "NTP" in check.fix


def test_jwt_claims_healthy_and_problems() -> None:
    now = 1_700_000_000.0
    good = {
        "sub": "id",
        "exp": now + 3600,
        "video": {"room": "r", "roomJoin": True, "canPublish": True, "canSubscribe": True},
    }
    assert check_jwt_claims(good, "r", "id", now).status == "ok"
    mismatch = check_jwt_claims(good, "other-room", "id", now)
    assert mismatch.status == "warn" and "room name" in mismatch.summary
    restricted = {**good, "video": {**good["video"], "canPublish": False}}  # type: ignore[dict-item]
    assert check_jwt_claims(restricted, "r", "id", now).status == "warn"
    expired = {**good, "exp": now - 10}
    assert check_jwt_claims(expired, "r", "id", now).status == "fail"
    no_join = {**good, "video": {"room": "r", "canPublish": True, "canSubscribe": True}}
    assert check_jwt_claims(no_join, "r", "id", now).status == "fail"


def test_jwt_check_never_puts_the_token_in_its_text() -> None:
    token = _jwt({"sub": "id", "video": {"room": "r", "roomJoin": True}})
    check = check_jwt_claims({"sub": "id", "video": {"room": "r", "roomJoin": True}}, "r", "id", 0)
    md, html = render([check], verbose=True, elapsed_s=1, secrets=[token])
    assert token not in md and token not in html


def test_small_formatters() -> None:
    assert fmt_ms(850) == "850 ms"
    assert fmt_ms(4200) == "4.2 s"
    assert fmt_ms(86_400_000) == "24 h"
    assert fmt_ms(5_400_000) == "1 h 30 min"
    assert http_url("wss://sfu.example.org/livekit/sfu/") == "https://sfu.example.org/livekit/sfu"
    assert http_url("ws://127.0.0.1:7880") == "http://127.0.0.1:7880"


# -- the runner's guard ------------------------------------------------------------------------
def _guarded() -> tuple[CheckRunner, RunState]:
    runner = CheckRunner(logging.getLogger("rtcbot.diagnostics"))  # the guard needs no bot
    return runner, RunState(RoomID("!room:example.org"), False, time.monotonic(), {SECRET})


async def test_guard_reports_a_timeout_as_a_failed_line() -> None:
    runner, run = _guarded()

    async def hang(run: RunState) -> None:
        await asyncio.sleep(5)

    await runner.guard(run, (CLOCK,), 0.05, hang)
    check = run.results[CLOCK]
    assert check.status == "fail" and "0.05 s" in check.summary and check.cause and check.fix


async def test_guard_redacts_secrets_from_unexpected_errors_in_report_and_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner, run = _guarded()

    async def boom(run: RunState) -> None:
        raise RuntimeError(f"GET https://sfu/rtc/validate?access_token={FAKE_JWT} with {SECRET}")

    with caplog.at_level(logging.DEBUG):
        await runner.guard(run, (GHOSTS,), 1, boom)
    check = run.results[GHOSTS]
    assert check.status == "fail"
    md, html = render([check], verbose=True, elapsed_s=1, secrets=run.secrets)
    for text in (check.cause, md, html, caplog.text):
        assert SECRET not in text and "eyJ" not in text
    assert "RuntimeError" in check.cause


async def test_guard_fills_lines_a_check_forgot_and_keeps_the_rest() -> None:
    runner, run = _guarded()

    async def partial(run: RunState) -> None:
        run.put(Check(PERM_BOT, "ok", "fine"))

    await runner.guard(run, (PERM_BOT, PERM_MEMBERS), 1, partial)
    assert run.results[PERM_BOT].status == "ok"
    assert run.results[PERM_MEMBERS].status == "skip"
