"""End-to-end encryption: is the bot's crypto on, and is its device cross-signed by its own
account (MSC4153: Element clients that exclude insecure devices neither share room keys with
an unsigned device nor show its messages; Element made that the default in 2026)."""

from __future__ import annotations

from ..matrix.crypto_status import CRYPTO_FIX, CryptoState, crypto_state, room_is_encrypted
from .probe import Probe, RunState
from .report import CRYPTO, FAIL, OK, WARN, Check

CROSS_SIGN_FIX = (
    "Cross-sign the bot's device with maubot's management API: "
    "`POST /_matrix/maubot/v1/client/<bot>/generate_recovery_key` the first time (keep the "
    'recovery key it returns), `POST …/client/<bot>/verify` with `{"recovery_key": …}` after '
    "the bot got a new device (docs/DEPLOYMENT.md)."
)


def judge_crypto(state: CryptoState, room_encrypted: bool | None) -> Check:
    """The report's line from what the bot knows (pure)."""
    where = (
        "this room is encrypted"
        if room_encrypted
        else "this room is not encrypted"
        if room_encrypted is False
        else "whether this room is encrypted is unknown"
    )
    if not state.enabled:
        return Check(
            CRYPTO,
            FAIL if room_encrypted else WARN,
            f"E2EE unavailable ({where})",
            cause=f"{state.reason or 'maubot gave the bot no crypto'}. The bot cannot read "
            "encrypted commands, says nothing in encrypted rooms (it never sends them an "
            "unencrypted message), and Element Call sends it no media keys (encrypted rooms "
            "are Element's default for private rooms and DMs).",
            fix=CRYPTO_FIX,
            details=(f"device: {state.device_id or 'none'}",),
        )
    details = (f"device: {state.device_id}", f"own trust: {state.own_trust}")
    if state.cross_signed:
        return Check(
            CRYPTO,
            OK,
            f"on; device `{state.device_id}` cross-signed by the bot's own account ({where})",
            details=details,
        )
    return Check(
        CRYPTO,
        WARN,
        f"on, but device `{state.device_id}` is not cross-signed by the bot's own account",
        cause="Element clients that exclude insecure devices send it no room keys and hide its "
        "messages; Element X with that setting also drops the media keys it sends.",
        fix=CROSS_SIGN_FIX,
        details=details,
    )


async def crypto_check(probe: Probe, run: RunState) -> None:
    client = probe.ctx.client
    state = await crypto_state(client)
    try:
        encrypted: bool | None = await room_is_encrypted(client, run.room_id)
    except Exception:
        encrypted = None
    run.put(judge_crypto(state, encrypted))
