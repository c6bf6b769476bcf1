"""The authorization service, checklist 6–10: its health, which token endpoints it serves, an
OpenID round trip that gets the bot a LiveKit token, and that token's claims; then the SFU
is tried with the token (sfu.py)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import aiohttp
from mautrix.api import Method, Path
from mautrix.errors import MatrixRequestError

from ..media.tokens import AuthServiceClient, SfuAccess, SfuAuthError
from ..rtc.identity import (
    DEFAULT_SLOT_ID,
    decode_jwt_claims,
    legacy_identity,
    livekit_identity,
    livekit_room_alias,
)
from ..rtc.sfus import same_sfu
from .probe import Probe, RunState
from .pure_checks import check_jwt_claims
from .report import (
    AUTH_ENDPOINTS,
    AUTH_HEALTH,
    ENABLE_SERVICE_FIX,
    FAIL,
    HS_TOKENS,
    JWT,
    OK,
    OPENID,
    SKIP,
    TRANSPORT_FIX,
    WARN,
    Check,
    error_text,
    fmt_ms,
    matrix_error,
    redact,
)
from .sfu import sfu_reachable

AUTH_CLIENT_TIMEOUT_S = 4.0  # each request of the OpenID → LiveKit token exchange


async def authorization(probe: Probe, run: RunState) -> None:
    await run.discovery_done.wait()
    url = run.service_url
    if not url and run.sfu_url:
        # A `url`-only transport: the homeserver issues the tokens (its own line says
        # whether it does); the OpenID service is not part of this setup.
        why = "the transport names its SFU by `url`; tokens come from the homeserver"
        for name in (AUTH_HEALTH, AUTH_ENDPOINTS, OPENID, JWT):
            run.put(Check(name, SKIP, why))
        await sfu_reachable(probe, run, None)
        return
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
        await sfu_reachable(probe, run, None)
        return
    source = f"service {url} (from {run.service_source})"
    health, endpoints = await asyncio.gather(_health(probe, url, source), _endpoints(probe, url))
    run.put(health)
    run.put(endpoints)
    disabled = "disabled" in health.summary
    access = await _openid(probe, run, url, source, disabled)
    if access is None:
        run.put(Check(JWT, SKIP, "no token to inspect (see above)"))
        await sfu_reachable(probe, run, None)
        return
    claims = decode_jwt_claims(access.jwt)
    expected_room = livekit_room_alias(run.room_id, DEFAULT_SLOT_ID)
    if access.via == "get_token":
        expected_id = livekit_identity(probe.ctx.client.mxid, probe.ctx.device_id, probe.member_id)
    else:
        expected_id = legacy_identity(probe.ctx.client.mxid, probe.ctx.device_id)
    run.put(check_jwt_claims(claims, expected_room, expected_id, time.time()))
    await sfu_reachable(probe, run, access)


async def _health(probe: Probe, url: str, source: str) -> Check:
    t = time.monotonic()
    try:
        status, body, _ = await probe.http("GET", f"{url}/healthz")
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        return Check(
            AUTH_HEALTH,
            FAIL,
            f"{url} is unreachable",
            cause=f"{error_text(e)}.",
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


async def _endpoints(probe: Probe, url: str) -> Check:
    """Checklist 7: `{}` to /get_token: 400 → the endpoint exists; 404 → older service."""
    try:
        status, body, _ = await probe.http("POST", f"{url}/get_token", {})
        detail = f"POST /get_token {{}} → {status} {body.get('errcode') or ''}".strip()
        if status == 400:
            return Check(
                AUTH_ENDPOINTS,
                OK,
                "serves `/get_token` (Matrix 2.0) and `/sfu/get`",
                details=(detail,),
            )
        if status == 404:
            old_status, old_body, _ = await probe.http("POST", f"{url}/sfu/get", {})
            detail2 = f"POST /sfu/get {{}} → {old_status} {old_body.get('errcode') or ''}".strip()
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
            cause=f"{error_text(e)}.",
            fix="See the authorization service line above.",
        )


async def _openid(
    probe: Probe, run: RunState, url: str, source: str, disabled: bool = False
) -> SfuAccess | None:
    """Checklist 8 (and 10): an OpenID token from the homeserver, exchanged for a JWT."""
    t = time.monotonic()
    try:
        openid = await probe.matrix(
            Method.POST, Path.v3.user[probe.ctx.client.mxid].openid.request_token, {}
        )
    except (MatrixRequestError, TimeoutError, aiohttp.ClientError) as e:
        run.put(
            Check(
                OPENID,
                FAIL,
                "the homeserver gave the bot no OpenID token",
                cause=matrix_error(e),
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
    client = AuthServiceClient(probe.ctx.http, timeout=AUTH_CLIENT_TIMEOUT_S, log=probe.log)
    try:
        access = await client.get_access(
            url, run.room_id, openid, probe.ctx.client.mxid, probe.ctx.device_id, probe.member_id
        )
    except SfuAuthError as e:
        run.put(_openid_failure(e, (source,), run.secrets, disabled, probe.server_name))
        return None
    run.secrets.add(access.jwt)
    endpoint = "/get_token" if access.via == "get_token" else "/sfu/get"
    if run.sfu_url and not same_sfu(run.sfu_url, access.url):
        _two_sfus(run, run.sfu_url, access.url)
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
    e: SfuAuthError,
    details: tuple[str, ...],
    secrets: set[str],
    disabled: bool,
    server_name: str,
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
    if e.kind == "unauthorised":
        return Check(
            OPENID,
            FAIL,
            f"the service refused the bot's OpenID token ({e.status})",
            cause=f"{said} It checks the token at `{server_name}`'s "
            "`/_matrix/federation/v1/openid/userinfo`, found by the federation rules "
            "(`.well-known/matrix/server`, else port 8448): the homeserver needs a `federation` "
            "or `openid` listener reachable from the service there, and valid TLS.",
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


def _two_sfus(run: RunState, sfu_url: str, service_sfu: str) -> None:
    """`url` and `livekit_service_url` name different SFUs: said on the homeserver token
    line (the transport's), whatever that line found itself."""
    line = run.results.get(HS_TOKENS)
    note = (
        f"The transport's `url` is {sfu_url}, but its `livekit_service_url` hands out tokens "
        f"for {service_sfu}: Element Call ≥ 0.28 joins on the first, older clients and "
        "Element X on the second, and the two groups will not see or hear each other."
    )
    if line is None or line.status == OK:
        run.put(
            Check(
                HS_TOKENS,
                WARN,
                "`url` and `livekit_service_url` name different SFUs",
                cause=note,
                fix="Point both at the same SFU (the service's `livekit_url` = the "
                "transport's `url`).",
                details=line.details if line else (),
            )
        )
    else:
        run.put(replace(line, details=(*line.details, note)))
