"""Olm-encrypted to-device events for the bot, authenticated, handed to subscribers.

The plumbing for Element Call's media keys (`io.element.call.encryption_keys`, sent to every
call member's device with Olm): mautrix's OlmMachine decrypts `m.room.encrypted` to-device
events and re-dispatches the inner event as a `DecryptedOlmEvent`. A plaintext to-device event
of the same type is dispatched too; it proves nothing about its sender and is dropped here
(Element X drops them as well). For an Olm one the sending device is looked up by the Curve25519
key that the Olm session authenticated, and its Ed25519 key must match the one the event
claims; a `claimed_device_id` in the content (Element Call puts one in `member`) must name that
device. Only then do subscribers see it (as matrix-js-sdk's `ToDeviceKeyTransport` checks).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from maubot.handlers import event
from mautrix.client import Client
from mautrix.types import DecryptedOlmEvent, EventType, ToDeviceEvent

CALL_ENCRYPTION_KEYS = EventType.find(
    "io.element.call.encryption_keys", t_class=EventType.Class.TO_DEVICE
)
# MSC4143 "current" media keys (matrix-rust-rtc; Element Call 0.30 receives them): no
# `member`, the sending device is the one the Olm session authenticated.
RTC_ENCRYPTION_KEY = EventType.find(
    "org.matrix.msc4143.rtc.encryption_key", t_class=EventType.Class.TO_DEVICE
)
RTC_ENCRYPTION_KEY_STABLE = EventType.find(
    "m.rtc.encryption_key", t_class=EventType.Class.TO_DEVICE
)
MEDIA_KEY_TYPES = (CALL_ENCRYPTION_KEYS, RTC_ENCRYPTION_KEY, RTC_ENCRYPTION_KEY_STABLE)


@dataclass(frozen=True)
class VerifiedToDevice:
    """A to-device event whose sending device the Olm session authenticated."""

    type: str
    sender: str
    device_id: str
    content: dict[str, Any]


Subscriber = Callable[[VerifiedToDevice], Awaitable[None]]


def claimed_device(content: dict[str, Any]) -> str | None:
    """The device the content says it comes from (Element Call: `member.claimed_device_id`)."""
    member = content.get("member")
    if isinstance(member, dict) and isinstance(member.get("claimed_device_id"), str):
        return str(member["claimed_device_id"])
    return None


class EncryptedToDevice:
    """Handlers for to-device types that must arrive Olm-encrypted; register with maubot's
    `register_handler_class`, subscribe with `subscribe(type, callback)`."""

    def __init__(self, client: Client, log: logging.Logger) -> None:
        self.client = client
        self.log = log
        self.subscribers: dict[str, list[Subscriber]] = {}
        self.received = 0  # authenticated events handed on
        self.rejected = 0

    def subscribe(self, event_type: EventType, callback: Subscriber) -> None:
        self.subscribers.setdefault(str(event_type), []).append(callback)

    @event.on(CALL_ENCRYPTION_KEYS)  # type: ignore[arg-type]
    async def on_call_keys(self, evt: ToDeviceEvent) -> None:
        await self.handle(evt)

    @event.on(RTC_ENCRYPTION_KEY)  # type: ignore[arg-type]
    async def on_rtc_key(self, evt: ToDeviceEvent) -> None:
        await self.handle(evt)

    @event.on(RTC_ENCRYPTION_KEY_STABLE)  # type: ignore[arg-type]
    async def on_rtc_key_stable(self, evt: ToDeviceEvent) -> None:
        await self.handle(evt)

    async def handle(self, evt: ToDeviceEvent) -> VerifiedToDevice | None:
        verified = await self.authenticate(evt)
        if verified is None:
            self.rejected += 1
            return None
        self.received += 1
        # Never the content: it carries key material.
        self.log.info(
            "Olm to-device %s from %s/%s (authenticated)",
            verified.type,
            verified.sender,
            verified.device_id,
        )
        for callback in self.subscribers.get(verified.type, []):
            try:
                await callback(verified)
            except Exception:
                self.log.exception("a %s subscriber failed", verified.type)
        return verified

    async def authenticate(self, evt: ToDeviceEvent) -> VerifiedToDevice | None:
        kind = str(evt.type)
        if not isinstance(evt, DecryptedOlmEvent):
            self.log.warning("dropped a plaintext to-device %s from %s", kind, evt.sender)
            return None
        crypto = self.client.crypto
        if crypto is None:  # cannot happen: only the OlmMachine makes DecryptedOlmEvents
            return None
        device = await crypto.get_or_fetch_device_by_key(evt.sender, evt.sender_key)
        if device is None:
            self.log.warning(
                "dropped a to-device %s from an unknown device of %s", kind, evt.sender
            )
            return None
        if evt.keys is None or evt.keys.ed25519 != device.signing_key:
            self.log.warning(
                "dropped a to-device %s from %s: signing key mismatch", kind, evt.sender
            )
            return None
        raw = evt.content.serialize() if hasattr(evt.content, "serialize") else None
        content: dict[str, Any] = dict(raw) if isinstance(raw, dict) else {}
        claimed = claimed_device(content)
        if claimed is not None and claimed != device.device_id:
            self.log.warning(
                "dropped a to-device %s from %s: it claims device %s but came from %s",
                kind,
                evt.sender,
                claimed,
                device.device_id,
            )
            return None
        return VerifiedToDevice(kind, str(evt.sender), str(device.device_id), content)
