"""The bot's Matrix E2EE at stack setup: a device with a crypto store (maubot's DB) and the
device cross-signed by the bot's own account, so that Element clients that exclude insecure
devices (MSC4153) exchange room keys with it.

maubot does the crypto; the stack only drives its management API:
- first start: `POST /client/{id}/generate_recovery_key` creates the bot's cross-signing keys,
  stores them in secret storage and signs the bot's device; the recovery key goes into the
  stack's secrets file (mode 0600) and nowhere else (never printed, scrubbed from errors);
- every later start: `POST /client/{id}/verify {"recovery_key"}` signs the current device again
  (a no-op for a device already signed, the fix for a new one), so a second `make run` on the
  same state never meets "Client already has cross-signing keys".
Whether it worked is read from the homeserver (`/keys/query`), not from maubot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rtcbot.redaction import redact, remember

from . import http
from .maubot_server import Maubot

RECOVERY_KEY = "bot_recovery_key"  # its name in the stack's secrets file


class CrossSigningError(RuntimeError):
    pass


def wait_for_crypto(maubot: Maubot, user_id: str, timeout: float = 60) -> dict[str, Any]:
    """maubot's client record once its crypto is loaded (an Olm account: a fingerprint)."""
    deadline = time.monotonic() + timeout
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        info = dict(maubot.api("GET", f"/client/{user_id}"))
        if info.get("fingerprint"):
            return info
        time.sleep(0.2)
    raise CrossSigningError(
        f"maubot's client {user_id} has no crypto after {timeout:.0f} s (device "
        f"{info.get('device_id')!r}; is maubot[encryption] installed?)\n"
        f"{maubot.child.log_tail()}"
    )


def device_cross_signed(homeserver_url: str, token: str, user_id: str, device_id: str) -> bool:
    """Does the homeserver show `device_id` signed by `user_id`'s self-signing key (which the
    user's master key signs)? What other clients check before trusting the device."""
    keys = http.request(
        "POST",
        f"{homeserver_url}/_matrix/client/v3/keys/query",
        {"device_keys": {user_id: []}},
        token=token,
    )
    ssk = keys.get("self_signing_keys", {}).get(user_id, {})
    ssk_ids = set(ssk.get("keys", {}))
    master_ids = set(keys.get("master_keys", {}).get(user_id, {}).get("keys", {}))
    if not ssk_ids or not master_ids:
        return False
    if not master_ids & set(ssk.get("signatures", {}).get(user_id, {})):
        return False
    device = keys.get("device_keys", {}).get(user_id, {}).get(device_id, {})
    return bool(ssk_ids & set(device.get("signatures", {}).get(user_id, {})))


def ensure_cross_signed(
    maubot: Maubot,
    bot: dict[str, Any],
    homeserver_url: str,
    recovery_key: str | None,
    save_recovery_key: Callable[[str], None],
) -> str:
    """Cross-sign the bot's device; returns what was done ("generated" or "verified")."""
    user_id, device_id = str(bot["user_id"]), str(bot["device_id"])
    wait_for_crypto(maubot, user_id)
    base = f"/client/{user_id}"
    try:
        if recovery_key:
            remember(recovery_key)
            maubot.api("POST", f"{base}/verify", {"recovery_key": recovery_key})
            done = "verified"
        else:
            try:
                answer = maubot.api("POST", f"{base}/generate_recovery_key", {})
            except http.HttpError as e:
                if e.json().get("errcode") == "client_has_keys":
                    raise CrossSigningError(
                        f"{user_id} already has cross-signing keys, but the stack's secrets "
                        "have no recovery key for them. Restore the recovery key into the "
                        f"secrets file as {RECOVERY_KEY!r}, or start from a clean state "
                        "(`make clean`)."
                    ) from None
                raise
            key = str(answer["recovery_key"])
            remember(key)
            save_recovery_key(key)
            done = "generated"
    except http.HttpError as e:
        # maubot's error text could echo the key: scrub it before it reaches a log or a test.
        raise CrossSigningError(
            redact(f"cross-signing the bot's device failed: {e}", [recovery_key or ""])
        ) from None
    if not device_cross_signed(homeserver_url, bot["access_token"], user_id, device_id):
        raise CrossSigningError(
            f"maubot answered, but the homeserver does not show {user_id}'s device "
            f"{device_id} as cross-signed\n{maubot.child.log_tail()}"
        )
    return done
