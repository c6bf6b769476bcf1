"""SFU discovery, checklist 4–5: the transports endpoint (MSC4143) and the legacy well-known
`rtc_foci`; which authorization service the later checks ask is settled here."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import aiohttp
from mautrix.api import Method
from mautrix.errors import MatrixRequestError

from ..matrix.transports import RTC_FOCI_KEY, TRANSPORTS_PATH, first_livekit, first_livekit_url
from ..media.homeserver_token_client import homeserver_access
from ..media.tokens import SfuAuthError
from ..rtc.member_fields import Transport
from .probe import Probe, RunState
from .report import (
    FAIL,
    HS_TOKENS,
    OK,
    TRANSPORT_FIX,
    TRANSPORTS,
    WARN,
    WELL_KNOWN,
    Check,
    error_text,
    matrix_error,
)


async def discovery(probe: Probe, run: RunState) -> None:
    # The authorization check waits for this, however discovery ends.
    try:
        await _discover(probe, run)
    finally:
        run.discovery_done.set()


async def _discover(probe: Probe, run: RunState) -> None:
    configured = probe.ctx.settings().livekit.service_url.rstrip("/")
    if configured:
        run.service_url = configured
        run.service_source = "the bot's config (livekit.service_url)"
        run.discovery_done.set()
    (t_url, t_check, advertised), (w_url, w_check, w_where) = await asyncio.gather(
        _transports(probe), _well_known(probe)
    )
    run.sfu_url = advertised.url if advertised else None
    # A transport with only `url` counts as advertised for what follows (its own line,
    # homeserver_tokens, says whether anything issues tokens for it).
    t_found = t_url or run.sfu_url
    if not configured and (t_url or w_url):
        run.service_url = t_url or w_url
        run.service_source = "the transports endpoint" if t_url else "the well-known rtc_foci"
    run.discovery_done.set()

    if not t_found and t_check.status != FAIL and w_url:
        t_check = Check(
            TRANSPORTS,
            WARN,
            t_check.summary,
            cause=t_check.cause + " Older clients still find the service in the well-known, "
            "but Element Call (since 2026-08) only asks this endpoint or its own config.",
            fix=t_check.fix,
            details=t_check.details,
        )
    elif not t_found and not w_url:
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
            WARN if t_found else FAIL,
            w_check.summary,
            cause=w_check.cause
            + (
                " Only older clients (and Element X as a fallback) need it."
                if t_found
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
    await homeserver_tokens(probe, run, advertised)


async def _transports(probe: Probe) -> tuple[str | None, Check, Transport | None]:
    try:
        resp = await probe.matrix(Method.GET, TRANSPORTS_PATH)
    except MatrixRequestError as e:
        if e.http_status == 404 or e.errcode == "M_UNRECOGNIZED":
            return (
                None,
                Check(
                    TRANSPORTS,
                    WARN,
                    "not served by the homeserver (404)",
                    cause="MSC4143 is off (`experimental_features.msc4143_enabled`).",
                    fix=TRANSPORT_FIX,
                    details=(f"GET {TRANSPORTS_PATH} → {matrix_error(e)}",),
                ),
                None,
            )
        return (
            None,
            Check(
                TRANSPORTS,
                FAIL,
                f"the homeserver answered {e.http_status}",
                cause=matrix_error(e),
                fix="Check the homeserver's logs.",
            ),
            None,
        )
    except (TimeoutError, aiohttp.ClientError) as e:
        return (
            None,
            Check(
                TRANSPORTS,
                FAIL,
                "no answer from the homeserver",
                cause=matrix_error(e),
                fix="Check that the homeserver is up and reachable from the bot.",
            ),
            None,
        )
    entries = resp.get("rtc_transports") if isinstance(resp, dict) else None
    advertised = first_livekit(entries)
    url = advertised.livekit_service_url if advertised else None
    listed = tuple(
        f"{t.get('type')}: {t.get('livekit_service_url') or t.get('url') or '?'}"
        for t in (entries or [])
        if isinstance(t, dict)
    )
    if url:
        return url, Check(TRANSPORTS, OK, f"advertises {url}", details=listed), advertised
    if advertised is not None and advertised.url:
        return (
            None,
            Check(
                TRANSPORTS,
                OK,
                f"advertises the SFU {advertised.url} (`url`; tokens from the homeserver)",
                details=listed,
            ),
            advertised,
        )
    return (
        None,
        Check(
            TRANSPORTS,
            WARN,
            "served, but lists no LiveKit transport",
            cause="`matrix_rtc.transports` in homeserver.yaml is empty or has no livekit entry "
            "with a `url` or a `livekit_service_url`.",
            fix=TRANSPORT_FIX,
            details=listed or ("answer: {}",),
        ),
        None,
    )


async def _well_known(probe: Probe) -> tuple[str | None, Check, str]:
    base = str(probe.ctx.client.api.base_url).rstrip("/")
    candidates = list(dict.fromkeys([f"https://{probe.server_name}", base]))
    answers = await asyncio.gather(*(_fetch_well_known(probe, c) for c in candidates))
    notes = [
        f"{c}/.well-known/matrix/client: {a[1]}" for c, a in zip(candidates, answers, strict=True)
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


async def _fetch_well_known(probe: Probe, base: str) -> tuple[str | None, str]:
    try:
        async with asyncio.timeout(probe.request_timeout):
            async with probe.ctx.http.get(
                f"{base}/.well-known/matrix/client", allow_redirects=True
            ) as resp:
                if resp.status != 200:
                    return None, f"HTTP {resp.status}"
                data = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        return None, error_text(e)
    if not isinstance(data, dict):
        return None, "not a JSON object"
    url = first_livekit_url(data.get(RTC_FOCI_KEY))
    return url, (f"rtc_foci → {url}" if url else "no livekit rtc_foci")


async def homeserver_tokens(probe: Probe, run: RunState, transport: Transport | None) -> None:
    """The 2026 failure modes of `url` transports (Synapse ≥ 1.161, MSC4512), in plain words:
    `url` with nothing behind the homeserver's token endpoint; only the deprecated field."""
    if transport is None:
        return
    if not transport.url:
        _put_hs(
            run,
            Check(
                HS_TOKENS,
                WARN,
                "the homeserver advertises only the deprecated `livekit_service_url`",
                cause="Synapse ≥ 1.161 deprecates it for `url`. Every client still uses it "
                "today (through OpenID), so calls work.",
                fix="When you add `url` to the transport, put a token service behind the "
                "homeserver first (MSC4512: `make appservice-registration`, docs/DEPLOYMENT.md) "
                "and keep `livekit_service_url` beside it for Element X and older clients.",
            ),
        )
        return
    try:
        access = await homeserver_access(
            probe.ctx.client, transport.url, run.room_id, probe.ctx.device_id, probe.member_id
        )
    except SfuAuthError as e:
        fallback = transport.livekit_service_url
        _put_hs(
            run,
            Check(
                HS_TOKENS,
                WARN if fallback and e.kind == "not_found" else FAIL,
                f"`url` advertised ({transport.url}), but rtc/livekit/get_token "
                + ("answers 404" if e.kind == "not_found" else f"fails ({e.status or e.kind})"),
                cause=(
                    "Nothing issues tokens for it: Element Call ≥ 0.28 asks there whenever a "
                    "transport has `url`, and its publishers never fall back, so they cannot "
                    "join. "
                    + (
                        "Older clients and the bot still use `livekit_service_url`."
                        if fallback
                        else "Nothing else is advertised, so no client can join."
                    )
                )
                if e.kind == "not_found"
                else e.message,
                fix="Set `experimental_features: {msc4512_enabled: true}` in homeserver.yaml and "
                "register a token service with `io.element.msc4512.proxy_prefix: rtc/livekit` "
                "(rtcbot's own: `make appservice-registration` and `auth_service."
                "appservice_hs_token`; docs/DEPLOYMENT.md).",
            ),
        )
        return
    run.secrets.add(access.jwt)
    _put_hs(
        run,
        Check(
            HS_TOKENS,
            OK,
            f"issued the bot a token for {transport.url}",
            details=(f"LiveKit room {access.room}, identity {access.identity}",),
        ),
    )


def _put_hs(run: RunState, check: Check) -> None:
    """The authorization check may have found first that `url` and the service name two
    SFUs (auth.py `_two_sfus`): that finding stays, with this one's words beside it."""
    found = run.results.get(HS_TOKENS)
    if found is None or found.status == OK:
        run.put(check)
    elif check.status == OK:
        run.put(replace(found, details=(*found.details, check.summary)))
    else:
        run.put(replace(check, details=(*check.details, found.cause)))
