"""The one door for the bot's room events: nothing unencrypted goes into an encrypted room.

mautrix encrypts a message event only when the client has crypto (`client.crypto`), the
event type is not on its `encryption_blacklist` (reactions) and the caller did not ask for
plaintext; otherwise it sends the event as it is, encrypted room or not. The guard wraps the
client's `send_message_event`, which every message, edit, reaction and media event of the
bot goes through (notices, call cards, recordings, transcripts, rings): an event that would
go out unencrypted into an encrypted room is not sent (PlaintextRefused), and the first such
event per room is logged with the reason. State events (`send_state_event`) are not messages
and are not guarded. Attachments are checked before their upload (`require_encryption`).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from mautrix.client import Client
from mautrix.types import EventID, EventType, RoomID

from .crypto_status import crypto_unavailable_reason, room_is_encrypted

SendMessageEvent = Callable[..., Awaitable[EventID]]
_NEVER_ENCRYPTED = {EventType.REACTION}  # mautrix's default encryption_blacklist


class PlaintextRefused(Exception):
    """The bot would have sent an unencrypted event into an encrypted room: nothing was sent."""


# The active guards on each client object, oldest first: two instances of the plugin can share
# one maubot client, and the wrapper must stay while any of them runs (the newest one checks).
_INSTALLED: weakref.WeakKeyDictionary[Client, list[EncryptionGuard]] = weakref.WeakKeyDictionary()


def _active_guard(client: Client) -> EncryptionGuard | None:
    guards = _INSTALLED.get(client)
    return guards[-1] if guards else None


async def require_encryption(client: Client, room_id: RoomID) -> None:
    """Before an upload in the clear: PlaintextRefused when `room_id` is (or may be) encrypted."""
    guard = _active_guard(client)
    await (guard or EncryptionGuard(client, logging.getLogger(__name__))).require_encryption(
        room_id
    )


class EncryptionGuard:
    def __init__(self, client: Client, log: logging.Logger) -> None:
        self.client = client
        self.log = log
        self._told: set[RoomID] = set()  # rooms whose refusal is already logged
        self.refused = 0
        self._guarded: SendMessageEvent | None = None  # the wrapper this guard installed
        self._guarded_name = ""  # its qualified name, the same for every guard's wrapper

    # -- installing --------------------------------------------------------------------------
    def install(self) -> None:
        """Wrap the client's send_message_event (on this client object only). The class's
        method is wrapped, not the instance's: a wrapper left on the same maubot client is
        replaced, not stacked; the checks go to the newest guard still active there."""
        send: SendMessageEvent = type(self.client).send_message_event.__get__(self.client)
        client = self.client

        async def guarded(
            room_id: RoomID,
            event_type: EventType,
            content: Any,
            disable_encryption: bool = False,
            **kwargs: Any,
        ) -> EventID:
            await (_active_guard(client) or self).check(room_id, event_type, disable_encryption)
            return await send(
                room_id, event_type, content, disable_encryption=disable_encryption, **kwargs
            )

        # Instance attribute: send_message, send_text, react … call self.send_message_event.
        self.client.send_message_event = guarded  # type: ignore[method-assign]
        self._guarded = guarded
        self._guarded_name = guarded.__qualname__
        guards = _INSTALLED.setdefault(self.client, [])
        if self not in guards:
            guards.append(self)

    def uninstall(self) -> None:
        """Remove this guard (maubot's client outlives the instance). The wrapper goes only
        with the last active guard on the client: another instance still running keeps it."""
        guards = _INSTALLED.get(self.client, [])
        if self in guards:
            guards.remove(self)
        if guards:
            return
        _INSTALLED.pop(self.client, None)
        # No guard left: remove whichever guard's wrapper is in place (maybe another's).
        current = vars(self.client).get("send_message_event")
        if current is not None and current.__qualname__ == self._guarded_name:
            del vars(self.client)["send_message_event"]

    # -- checking ----------------------------------------------------------------------------
    def will_encrypt(self, event_type: EventType, disable_encryption: bool = False) -> bool:
        """What mautrix's EncryptingAPI does with this event in an encrypted room."""
        return (
            self.client.crypto is not None
            and not disable_encryption
            and event_type not in getattr(self.client, "encryption_blacklist", _NEVER_ENCRYPTED)
        )

    async def check(
        self, room_id: RoomID, event_type: EventType, disable_encryption: bool = False
    ) -> None:
        """Raise PlaintextRefused when this event would go out unencrypted into an encrypted
        room (or one whose encryption cannot be read: the strict answer)."""
        if self.will_encrypt(event_type, disable_encryption):
            return
        try:
            encrypted: bool | None = await room_is_encrypted(self.client, room_id)
        except Exception:
            encrypted = None
        if encrypted is False:
            return
        self.refused += 1
        why = crypto_unavailable_reason(self.client) or (
            f"{event_type} events are not encrypted by the client"
        )
        if room_id not in self._told:
            self._told.add(room_id)
            self.log.warning(
                "E2EE unavailable: saying nothing in %s, which is %s (%s); later events "
                "there are withheld without a log line",
                room_id,
                "end-to-end encrypted" if encrypted else "possibly encrypted (unreadable state)",
                why,
            )
        raise PlaintextRefused(f"not sent into {room_id}: {why}")

    async def require_encryption(self, room_id: RoomID) -> None:
        """Before uploading a room's attachment in the clear: refused where the room is
        encrypted (the bytes would sit unencrypted on the media repository)."""
        await self.check(room_id, EventType.ROOM_MESSAGE)
