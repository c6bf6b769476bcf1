"""LiveKit, checklist 11: the SFU accepts the issued token at `/rtc/validate` (or, without a
service, a token the bot mints itself). The token travels in the query: the URL is never
logged, and every answer is redacted."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import aiohttp

from ..media.tokens import SfuAccess, mint_local_token
from ..rtc.identity import DEFAULT_SLOT_ID, livekit_room_alias
from .probe import Probe, RunState
from .report import FAIL, OK, SFU, SKIP, WARN, Check, error_text, fmt_ms, http_url, redact

LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")


async def sfu_reachable(probe: Probe, run: RunState, access: SfuAccess | None) -> None:
    """Checklist 11: LiveKit accepts the token at `/rtc/validate` (URL never logged)."""
    how = ""
    if access is None:
        lk = probe.ctx.settings().livekit
        if not (lk.url and lk.api_key and lk.api_secret):
            run.put(Check(SFU, SKIP, "no LiveKit token to test with (see above)"))
            return
        access = mint_local_token(
            lk,
            livekit_room_alias(run.room_id, DEFAULT_SLOT_ID),
            f"{probe.ctx.client.mxid}:{probe.ctx.device_id}:diag",
            "recorder",
            ttl=timedelta(minutes=2),
        )
        run.secrets.add(access.jwt)
        how = " (tested with a token the bot minted from `livekit.api_key`)"
    base = http_url(access.url)
    t = time.monotonic()
    try:
        async with asyncio.timeout(probe.request_timeout):
            async with probe.ctx.http.get(
                f"{base}/rtc/validate",
                params={"access_token": access.jwt},
                allow_redirects=False,
            ) as resp:
                status = resp.status
                text = (await resp.content.read(2048)).decode("utf-8", errors="replace")
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        reason = "no answer in time" if isinstance(e, TimeoutError) else error_text(e)
        local = any(h in access.url for h in LOCAL_HOSTS)
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
        run.put(Check(SFU, OK, f"LiveKit at {access.url} accepts the token{how}", details=details))
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
