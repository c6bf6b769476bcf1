"""Is the bot's Matrix E2EE usable, and what to say when it is not.

Crypto is on when maubot gave the client an OlmMachine (`client.crypto`): the `encryption`
extra is installed AND the client has a device. Without it the bot can neither read nor send
encrypted messages, nor receive Element Call's media keys: in an encrypted room the commands
that would act on the call (join, record, announce, auto-follow) are refused with the reason
and the fix. Nothing here imports `mautrix.crypto` (it needs python-olm, which may be missing).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mautrix.client import Client
from mautrix.errors import MNotFound
from mautrix.types import EventType, RoomID, TrustState

CRYPTO_FIX = (
    "Install maubot's `encryption` extra (`pip install 'maubot[encryption]'`) in maubot's "
    "environment, give the bot's client a device (log it in with `mbc auth` or the admin "
    "panel), then cross-sign that device once with the client's recovery key "
    '(docs/DEPLOYMENT.md, "End-to-end encryption").'
)

# What each refused command would have needed the keys for.
NEEDS = {
    "join": "join this encrypted call (the others send their media keys only to a device with crypto)",
    "record": "record this encrypted call (without the media keys the recording is noise)",
    "announce": "speak into this encrypted call (the others could not decrypt my audio)",
    "auto": "follow the calls of this encrypted room",
}


@dataclass(frozen=True)
class CryptoState:
    enabled: bool
    device_id: str | None
    # Trust of the bot's own device as other clients judge it; None when crypto is off or
    # it could not be resolved.
    own_trust: TrustState | None = None
    # Why crypto is off (crypto_unavailable_reason), None when it is on.
    reason: str | None = None

    @property
    def cross_signed(self) -> bool:
        """Signed by the bot's own self-signing key (what MSC4153 clients require)."""
        return self.own_trust is not None and self.own_trust >= TrustState.CROSS_SIGNED_UNTRUSTED


def refusal_text(command: str) -> str:
    """The notice for a command refused in an encrypted room because crypto is off: one
    sentence for whoever asked; the fix is for the operator (`!call diag`, /health, the log)."""
    need = NEEDS.get(command, "act in this encrypted room")
    return (
        f"🔒 I can't {need}: this room is end-to-end encrypted and my end-to-end encryption "
        "is off (an admin finds why in the diag command)."
    )


def _replaced_under_us(client: Client) -> bool:
    """maubot swapped the client object of this user (new token, homeserver or device) while
    this instance ran: maubot cleared `crypto` on the object the instance still holds."""
    try:
        from maubot.client import Client as MaubotClient
    except ImportError:  # outside maubot (unit tests)
        return False
    current = MaubotClient.cache.get(client.mxid)
    return current is not None and current.client is not client


def crypto_unavailable_reason(client: Client) -> str | None:
    """Why the bot has no E2EE (one fixed sentence, no secrets), or None when it has it."""
    if client.crypto is not None:
        return None
    if _replaced_under_us(client):
        return (
            "maubot replaced the bot's Matrix client while this instance ran (its access "
            "token, homeserver or device changed) and the instance kept the old one, which has "
            "no crypto: restart the instance"
        )
    if not client.device_id:
        return "the bot's client has no device (log it in with a device ID)"
    return (
        "maubot gave the bot's client no crypto (is the `encryption` extra installed and the "
        "crypto database configured?)"
    )


async def crypto_state(client: Client) -> CryptoState:
    crypto = client.crypto
    if crypto is None:
        return CryptoState(
            False, str(client.device_id or "") or None, reason=crypto_unavailable_reason(client)
        )
    try:
        trust: TrustState | None = await crypto.resolve_trust(crypto.own_identity)
    except Exception:
        trust = None
    return CryptoState(True, str(client.device_id), trust)


async def room_is_encrypted(client: Client, room_id: RoomID) -> bool:
    """From the client's state store when it knows, else from the room state."""
    store = client.state_store
    known = await store.is_encrypted(room_id) if store is not None else None
    if known is not None:
        return bool(known)
    try:
        await client.get_state_event(room_id, EventType.ROOM_ENCRYPTION)
    except MNotFound:
        return False
    return True


async def crypto_refusal(client: Client, room_id: RoomID, command: str) -> str | None:
    """The refusal when `command` needs crypto here and the bot has none, else None.

    The command is refused either way; the notice itself is withheld by the encryption guard
    (matrix/encryption_guard.py: nothing unencrypted goes into an encrypted room), which logs
    why once per room, and `/health` and `!call diag` in other rooms report it."""
    if client.crypto is not None:
        return None
    try:
        encrypted = await room_is_encrypted(client, room_id)
    except Exception:
        return None  # unknown: let the command try, it says what fails
    return refusal_text(command) if encrypted else None


async def refused_without_crypto(
    client: Client, room_id: RoomID, command: str, reply: Callable[[str], Awaitable[object]]
) -> bool:
    """Reply with the refusal and return True when `command` needs crypto here (the commands'
    one-line guard)."""
    why = await crypto_refusal(client, room_id, command)
    if why is None:
        return False
    await reply(why)
    return True
