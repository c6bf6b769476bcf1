"""Element Call's media keys over Matrix: received from call members, the bot's own sent to them.

In an encrypted room Element Call encrypts each participant's media with a per-participant
key and sends it to every member device as an Olm to-device `io.element.call.encryption_keys`
message (matrix-js-sdk `ToDeviceKeyTransport`). This manager is the bot's side of that exchange; what the
keys mean and when the own key rotates is decided in the pure core (rtc/e2ee_keys.py), and the
LiveKit side applies them (media/frame_keys.py).

Receiving (`on_keys`, subscribed to `EncryptedToDevice`, matrix/to_device.py, whose maubot
handler takes ONLY Olm-decrypted events and authenticates the sending device by the
Curve25519 key of the Olm session, its Ed25519 key and the content's `claimed_device_id`):
the content is validated, kept only for a room the bot is in from a sender who has not left
it, stored per room, (user, device) and index, and handed to the key
ring of the room's call under the sender's LiveKit identity when that device is a member of
the call, else held until its membership appears (or for 10 minutes).

Sending (`begin` … `end`, while the bot's participant is in an encrypted call): `begin`
makes the bot's first key, sends it to the members and returns a second after it went out
and each member's own key came (at most 5 s), so the bot's first frames do not reach anyone
before its key (no "MissingKey" errors, no lost first words); then the call's member devices are read from the call model (every 250 ms, memory only); each change goes
through `OutboundKeys` and the resulting key is sent with the bot's OlmMachine to each target
device (at most 8 at a time), with `member.id` = the bot's membership ID and
`claimed_device_id` = its real device: the device of its call membership, the one Element
Call sends its keys to. A key never appears in a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from mautrix.types import DeviceID, Membership, RoomID, UserID

from ..context import BotContext
from ..matrix.crypto_status import CRYPTO_FIX, room_is_encrypted
from ..matrix.to_device import CALL_ENCRYPTION_KEYS, RTC_ENCRYPTION_KEY, VerifiedToDevice
from ..media.connect_errors import SfuConnectError
from ..media.frame_keys import FrameKeys
from ..ports import CallDirectory
from ..rtc.e2ee_keys import (
    USE_KEY_DELAY_MS,
    Device,
    InboundKeys,
    KeyMessage,
    KeyMessageError,
    MemberDevice,
    OutboundKeys,
    Rollout,
    Target,
    current_key_content,
    key_message_content,
    member_devices,
    parse_key_message,
)
from ..rtc.identity import legacy_identity
from .keys_report import KeysReport, MemberKeys

POLL_S = 0.25  # membership changes reach the key exchange within this
SEND_CONCURRENCY = 8
MAX_ROOMS = 256  # rooms whose received keys are kept (least recently used first out)
RETRY_S = (2.0, 5.0, 15.0, 60.0)  # devices a key did not reach are tried again after these
FIRST_SEND_WAIT_S = 5.0  # at most this long for the first keys (out and in) before connecting

NO_CRYPTO = (
    "This call is end-to-end encrypted and my end-to-end encryption is off: I would record "
    "only silence, and nobody could decrypt what I say. Fix: " + CRYPTO_FIX
)


@dataclass
class _Session:
    """The bot in one encrypted call."""

    room_id: str
    frame_keys: FrameKeys
    outbound: OutboundKeys
    devices: dict[Device, MemberDevice] = field(default_factory=dict)
    watch: asyncio.Task[None] | None = None
    rollout: asyncio.Task[None] | None = None
    retry_at: float | None = None
    failures: int = 0
    first_sent: asyncio.Event = field(default_factory=asyncio.Event)
    last_sent: dict[Device, float] = field(default_factory=dict)  # monotonic


def _now_ms() -> int:
    return int(time.time() * 1000)


class CallKeys:
    """Satisfies media.presence's key ring source for the media roles (`begin`, `end`)."""

    def __init__(
        self,
        ctx: BotContext,
        calls: CallDirectory,
        *,
        poll_s: float = POLL_S,
        send_concurrency: int = SEND_CONCURRENCY,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self.ctx = ctx
        self.calls = calls
        self.log = ctx.logger("call_keys")
        self.poll_s = poll_s
        self.send_concurrency = send_concurrency
        self._clock_ms = clock_ms
        self.inbound: OrderedDict[str, InboundKeys] = OrderedDict()
        self.sessions: dict[str, _Session] = {}

    # -- the bot -----------------------------------------------------------------------------
    @property
    def own_device(self) -> Device:
        return (self.ctx.user_id, self.ctx.device_id)

    def member_id(self, room_id: str) -> str:
        """The member id of the bot's membership in that room, which its keys must name
        (js-sdk 45 binds a key to it): `user:device` for Element Call's state event
        (rtc/own_content.session_content), its own id for an MSC4143 current membership."""
        wire = getattr(self.calls.publisher(room_id), "wire", None)
        if wire is not None and wire.dialect == "current":
            return str(wire.member_id)
        return legacy_identity(self.ctx.user_id, self.ctx.device_id)

    # -- receiving ---------------------------------------------------------------------------
    async def on_keys(self, event: VerifiedToDevice) -> None:
        """An authenticated `io.element.call.encryption_keys` (EncryptedToDevice subscriber)."""
        metrics = self.ctx.metrics.media_keys_received
        try:
            msg = parse_key_message(event.content, event.sender, device_id=event.device_id)
        except KeyMessageError as e:
            metrics.labels("invalid").inc()
            self.log.warning(
                "dropped a media key from %s/%s: %s", event.sender, event.device_id, e
            )
            return
        if msg.device_id != event.device_id:  # to_device.py checked it; never trust twice less
            metrics.labels("invalid").inc()
            return
        if not await self._may_hold(msg.room_id, msg.user_id):
            metrics.labels("invalid").inc()
            self.log.warning(
                "dropped a media key from %s/%s for %s: not a room the two of us are in",
                msg.user_id,
                msg.device_id,
                msg.room_id,
            )
            return
        if not self._accepted(msg.room_id, msg, self._clock_ms()):
            metrics.labels("outdated").inc()
            self.log.info(
                "dropped an outdated media key (index %d) from %s/%s",
                msg.key.index,
                msg.user_id,
                msg.device_id,
            )
            return
        metrics.labels("accepted").inc()
        session = self.sessions.get(msg.room_id)
        member = session.devices.get((msg.user_id, msg.device_id)) if session else None
        self.log.info(
            "media key index %d from %s/%s for %s%s",
            msg.key.index,
            msg.user_id,
            msg.device_id,
            msg.room_id,
            "" if member is not None else " (held: not in the bot's call there)",
        )
        if session is not None and member is not None:
            session.frame_keys.set_remote(member.identity, msg.key)

    async def _may_hold(self, room_id: str, sender: str) -> bool:
        """Keys are kept only for rooms the bot is in, from senders who have not left them
        (anyone with an Olm session can send a key for any room ID: bounded memory)."""
        store = self.ctx.client.state_store
        if store is None:
            return True
        try:
            bot = await store.get_member(RoomID(room_id), UserID(self.ctx.user_id))
            member = await store.get_member(RoomID(room_id), UserID(sender))
        except Exception:
            return True  # the store is unavailable: the call's own checks still apply
        if bot is None or bot.membership != Membership.JOIN:
            return False
        # Unknown (lazy-loaded members) is kept: such a sender is held until its call
        # membership appears, or forgotten.
        return member is None or member.membership == Membership.JOIN

    def _accepted(self, room_id: str, msg: KeyMessage, now_ms: int) -> bool:
        inbound = self.inbound.get(room_id)
        if inbound is None:
            inbound = self.inbound[room_id] = InboundKeys()
            while len(self.inbound) > MAX_ROOMS:
                oldest = next(iter(self.inbound))
                if oldest in self.sessions:  # never the keys of a call the bot is in
                    self.inbound.move_to_end(oldest)
                    break
                del self.inbound[oldest]
        self.inbound.move_to_end(room_id)
        session = self.sessions.get(room_id)
        return inbound.add(msg, now_ms, session.devices if session is not None else ())

    # -- the bot in an encrypted call ----------------------------------------------------------
    async def begin(self, room_id: str) -> FrameKeys | None:
        """Before the bot's participant connects: the call's key ring, or None when the room
        is not encrypted. Raises SfuConnectError (a sentence) when the bot cannot take part
        encrypted."""
        session = self.sessions.get(room_id)
        if session is not None:
            return session.frame_keys
        client = self.ctx.client
        try:
            encrypted = await room_is_encrypted(client, RoomID(room_id))
        except Exception as e:
            raise SfuConnectError(
                "unreachable",
                f"I could not find out whether this room is end-to-end encrypted ({e}), so "
                "I stay out of its call's media.",
            ) from None
        if not encrypted:
            return None
        if client.crypto is None:
            raise SfuConnectError("not_authorised", NO_CRYPTO)
        keys = FrameKeys(self.log.getChild("frames"), on_state=self._on_state)
        session = _Session(room_id, keys, OutboundKeys())
        self.sessions[room_id] = session
        try:
            await self._open(session)
        except BaseException:
            await self.end(room_id)
            raise
        return keys

    async def _open(self, session: _Session) -> None:
        room_id, keys = session.room_id, session.frame_keys
        session.devices = await self._devices(room_id)
        self._bind(session)
        first = session.outbound.update(self._targets(session), self._clock_ms())
        own = session.outbound.in_use
        assert own is not None  # update() always makes the first key
        keys.set_own(own)  # before the participant connects: set on every room it attaches
        keys.use_own(own.index)
        # Own tasks, not ctx.tasks: they live as long as the bot is in the call (end() ends
        # them), and ctx.tasks' stop would wait for a loop that never ends by itself.
        if first is not None:
            session.rollout = self._task(self._rollouts(session, first))
        session.watch = self._task(self._watch(session))
        self.log.info(
            "in the encrypted call of %s: own media key index %d, %d member devices",
            room_id,
            own.index,
            len(session.devices),
        )
        if first is not None:
            await self._first_key_out(session)

    async def _first_key_out(self, session: _Session) -> None:
        """The bot's first frames must not reach people before its key does: they would see
        "MissingKey" errors and lose the first words. Wait until the key is sent and each
        member's own key has come (its client has seen the bot's membership, so its sync
        runs; at most FIRST_SEND_WAIT_S), then a second more, js-sdk's useKeyDelay."""
        since = self._clock_ms()
        deadline = asyncio.get_running_loop().time() + FIRST_SEND_WAIT_S

        def everyone_keyed() -> bool:
            keys = self.inbound.get(session.room_id)
            return keys is not None and all(
                (latest := keys.latest(d)) is not None and latest[1] >= since
                for d in session.devices
            )

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(session.first_sent.wait(), FIRST_SEND_WAIT_S)
        while not everyone_keyed() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(USE_KEY_DELAY_MS / 1000)

    async def end(self, room_id: str) -> None:
        """The bot's participant left the call: no more keys go out; received ones are kept
        for a while (the bot may come back)."""
        session = self.sessions.pop(room_id, None)
        if session is None:
            return
        for task in (session.watch, session.rollout):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        session.frame_keys.close()
        self.log.info("left the encrypted call of %s", room_id)

    async def stop(self) -> None:
        for room_id in list(self.sessions):
            await self.end(room_id)

    # -- following the call ------------------------------------------------------------------
    async def _devices(self, room_id: str) -> dict[Device, MemberDevice]:
        call = (await self.calls.room(room_id)).call()
        return {} if call is None else member_devices(call.members.values(), self.own_device)

    @staticmethod
    def _targets(session: _Session) -> list[Target]:
        return [d.target for d in session.devices.values()]

    def _bind(self, session: _Session) -> None:
        """Give the key ring every held key whose device is in the call now."""
        inbound = self.inbound.get(session.room_id)
        if inbound is None:
            return
        for identity, key in inbound.bound(session.devices):
            session.frame_keys.set_remote(identity, key)

    async def _watch(self, session: _Session) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                devices = await self._devices(session.room_id)
            except Exception as e:
                self.log.warning("could not read the call of %s: %s", session.room_id, e)
                continue
            if devices != session.devices:
                for device, gone in session.devices.items():
                    now = devices.get(device)
                    if now is None or now.identity != gone.identity:  # left, or re-created
                        session.frame_keys.forget(gone.identity)
                session.devices = devices
                self._bind(session)
                self._plan(session)
                inbound = self.inbound.get(session.room_id)
                if inbound is not None:
                    inbound.prune(devices, self._clock_ms())
            elif session.retry_at is not None and loop.time() >= session.retry_at:
                session.retry_at = None
                self._plan(session)

    def _plan(self, session: _Session) -> None:
        rollout = session.outbound.update(self._targets(session), self._clock_ms())
        if rollout is not None:  # else nothing to send, or one is running (it runs again)
            session.rollout = self._task(self._rollouts(session, rollout))

    async def _rollouts(self, session: _Session, first: Rollout) -> None:
        out = session.outbound
        rollout: Rollout | None = first
        while rollout is not None:
            if rollout.rotated:
                self.ctx.metrics.media_key_rotations.inc()
            if rollout.switch:
                # In the key provider now; the sender moves to it only after the delay.
                session.frame_keys.set_own(rollout.key)
            delivered = await self._send(session, rollout)
            session.first_sent.set()
            if not delivered:
                out.failed(rollout)
                self._retry_later(session)
            else:
                if len(delivered) < len(rollout.targets):
                    self._retry_later(session)
                else:
                    session.failures = 0
                at = out.sent(rollout, self._clock_ms(), delivered)
                if at is not None:
                    await asyncio.sleep(max(0.0, (at - self._clock_ms()) / 1000))
                    while (key := out.switch_due(self._clock_ms())) is None:
                        await asyncio.sleep(0.05)
                    session.frame_keys.use_own(key.index)
                    self.log.info(
                        "the bot now encrypts its media in %s with key index %d",
                        session.room_id,
                        key.index,
                    )
            rollout = out.update(self._targets(session), self._clock_ms()) if out.again else None

    def _task(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(self._logged(coro))
        return task

    async def _logged(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("the media key exchange failed")

    def _retry_later(self, session: _Session) -> None:
        delay = RETRY_S[min(session.failures, len(RETRY_S) - 1)]
        session.failures += 1
        session.retry_at = asyncio.get_running_loop().time() + delay

    async def _send(self, session: _Session, rollout: Rollout) -> list[Target]:
        """Send the key to each target device over Olm; the targets it reached."""
        crypto = self.ctx.client.crypto
        if crypto is None:
            return []
        room, me = session.room_id, self.member_id(session.room_id)
        # Each peer in the dialect it speaks: MSC4143 current peers read rtc.encryption_key.
        by_dialect = {
            "element_call": (
                CALL_ENCRYPTION_KEYS,
                key_message_content(room, me, self.ctx.device_id, rollout.key, self._clock_ms()),
            ),
            "current": (RTC_ENCRYPTION_KEY, current_key_content(room, me, rollout.key)),
        }
        dialects = {d: m.dialect for d, m in (await self._devices(room)).items()}
        limit = asyncio.Semaphore(self.send_concurrency)
        sent = self.ctx.metrics.media_keys_sent

        async def one(target: Target) -> bool:
            user, device_id, _ts = target
            async with limit:
                try:
                    device = await crypto.get_or_fetch_device(UserID(user), DeviceID(device_id))
                    if device is None:
                        self.log.warning(
                            "no keys of device %s/%s: media key not sent", user, device_id
                        )
                        return False
                    kind, body = by_dialect[dialects.get((user, device_id), "element_call")]
                    await crypto.send_encrypted_to_device(device, kind, body)
                except Exception as e:
                    self.log.warning(
                        "sending the media key to %s/%s failed: %s", user, device_id, e
                    )
                    return False
            session.last_sent[(user, device_id)] = time.monotonic()
            return True

        results = await asyncio.gather(*(one(t) for t in rollout.targets))
        delivered = [t for t, ok in zip(rollout.targets, results, strict=True) if ok]
        sent.labels("sent").inc(len(delivered))
        sent.labels("failed").inc(len(rollout.targets) - len(delivered))
        self.log.info(
            "own media key index %d sent to %d of %d devices in %s",
            rollout.key.index,
            len(delivered),
            len(rollout.targets),
            session.room_id,
        )
        return delivered

    def _on_state(self, identity: str, state: str, own: bool) -> None:
        self.ctx.metrics.frame_crypto_states.labels(state, "bot" if own else "participant").inc()

    # -- reading -----------------------------------------------------------------------------
    def report(self, room_id: str) -> KeysReport | None:
        """What `!call diag` shows; None when the bot is not in an encrypted call there."""
        session = self.sessions.get(room_id)
        if session is None:
            return None
        inbound = self.inbound.get(room_id) or InboundKeys()
        now_ms, now = self._clock_ms(), time.monotonic()
        members = []
        for device, m in sorted(session.devices.items()):
            latest = inbound.latest(device)
            st = session.frame_keys.states.get(m.identity)
            sent_at = session.last_sent.get(device)
            members.append(
                MemberKeys(
                    m.user_id,
                    m.device_id,
                    m.identity,
                    len(inbound.keys_of(device)),
                    latest[0] if latest else None,
                    (now_ms - latest[1]) / 1000 if latest else None,
                    st.state if st else None,
                    now - st.since if st else None,
                    now - sent_at if sent_at is not None else None,
                )
            )
        own = session.frame_keys.own_state
        return KeysReport(
            room_id,
            session.frame_keys.own_index,
            session.outbound.rotations,
            members,
            inbound.waiting(session.devices),
            own.state if own else None,
        )

    def live_metrics(self) -> dict[str, float]:
        not_ok = sum(
            1
            for s in self.sessions.values()
            for m in s.devices.values()
            if not s.frame_keys.decrypting(m.identity)
        )
        return {
            "rtcbot_encrypted_calls": len(self.sessions),
            "rtcbot_participants_not_decrypting": not_ok,
        }
