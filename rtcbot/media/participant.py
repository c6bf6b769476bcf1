"""One LiveKit participant of the bot: connect, notice a lost SFU, reconnect, disconnect.

The SDK itself resumes short interruptions (its events "reconnecting"/"reconnected" on the
same `rtc.Room`) and gives up after about 20 s of failed attempts, emitting "disconnected".
From there this class takes over: it fetches a fresh token and connects a *new* `rtc.Room`
with backoff (1, 2, 4 … 30 s) until it succeeds, `close()` is called, or `give_up_after`
seconds have passed. Users register callbacks:

- `setup(room)` (argument of `connect`): called for every new `rtc.Room` before it connects,
  so event handlers see the tracks that are already there;
- `on_state(state, detail)`: every state change ("connecting", "connected", "reconnecting",
  "lost", "failed", "closed"); detail is a sentence for people or None;
- `on_lost(message)`: the connection is gone and the SDK gave up (the bot may tell the room);
- `on_reconnected(room)`: a new room is connected after a loss (the recorder starts a new
  segment);
- `after_connect(room)`: every room right after its connect, before anything else sees it
  (an encrypted call's key ring gives it every frame key: frame_keys.py).

Frame encryption (`use_frame_keys`, or `encryption` given to `connect`) applies to every
room, the ones connected after an SFU loss too; `frame_keys` is that call's key ring.

Two SDK pitfalls shape the code (found with the Python SDK, python-sdks `livekit-rtc`): `room.connect` must never be
cancelled (the native side then kills the process 15 s later), so it runs in its own
shielded task and `close()` waits for an attempt in flight instead of cancelling it; and the
SDK's error text contains the access token, so every message is scrubbed before use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

from livekit import rtc

from rtcbot.media.frame_keys import FrameKeys
from rtcbot.media.stream_close import disconnect_room
from rtcbot.media.tokens import SfuAccess, SfuAuthError

from ..tasks import Hooks
from .connect_errors import (
    SfuConnectError,
    classify_connect_error,
    connect_error_message,
    scrub,
    status_from_error,
    validate_status,
)

State = Literal["idle", "connecting", "connected", "reconnecting", "lost", "failed", "closed"]
Setup = Callable[[rtc.Room], None]
AfterConnect = Callable[[rtc.Room], None]

_REASON = rtc.DisconnectReason
# The SFU ended the session on purpose: reconnecting would fight the server or an admin.
_FINAL_REASONS: dict[int, str] = {
    _REASON.DUPLICATE_IDENTITY: "another connection with the same identity replaced the bot",
    _REASON.PARTICIPANT_REMOVED: "the bot was removed from the LiveKit room",
    _REASON.ROOM_DELETED: "the LiveKit room was deleted",
    _REASON.ROOM_CLOSED: "the LiveKit room was closed",
}


def backoff_delays(first: float = 1.0, cap: float = 30.0) -> Callable[[int], float]:
    """Delay before reconnect attempt n (0-based): 1, 2, 4, 8, 16, 30, 30 … seconds."""

    def delay(n: int) -> float:
        return float(min(cap, first * 2 ** min(n, 16)))

    return delay


async def release_room(room: rtc.Room) -> None:
    """Disconnect `room` and make sure the SDK's listener task for it ends.

    livekit 1.2.1: `Room.disconnect()` returns at once for a room the SDK already saw
    disconnected (an SFU that went away), and that room's listener task then waits forever
    for an end-of-stream event that never comes: one task and one native room leaked per SFU
    loss. Such leftovers are found by their coroutine's `self` and cancelled.
    """
    with contextlib.suppress(Exception):
        await disconnect_room(room)  # bounded: a lost SFU must not hold a stop (stream_close.py)
    for task in asyncio.all_tasks():
        frame = getattr(task.get_coro(), "cr_frame", None)
        if not task.done() and frame is not None and frame.f_locals.get("self") is room:
            task.cancel()


class Connection(Protocol):
    """What Recorder and Announcer need of their connection: a `Participant` of their own, or
    one role's handle on the bot's shared participant (presence.py)."""

    log: logging.Logger

    @property
    def on_state(self) -> Hooks[[State, str | None]]: ...
    @property
    def on_lost(self) -> Hooks[[str]]: ...
    @property
    def on_reconnected(self) -> Hooks[[rtc.Room]]: ...
    @property
    def state(self) -> State: ...
    @property
    def frame_keys(self) -> FrameKeys | None:
        """The call's frame key ring when its media is end-to-end encrypted, else None."""
        ...

    async def connect(
        self,
        *,
        auto_subscribe: bool = ...,
        setup: Setup | None = ...,
        encryption: rtc.E2EEOptions | None = ...,
    ) -> rtc.Room: ...

    async def close(self) -> None: ...


class Participant:
    """One connection of the bot to one LiveKit room, kept alive across SFU losses."""

    def __init__(
        self,
        get_access: Callable[[], Awaitable[SfuAccess]],
        log: logging.Logger,
        connect_timeout: float = 10,
        *,
        max_backoff: float = 30.0,
        give_up_after: float | None = 900.0,
        name: str = "participant",
        frame_keys: FrameKeys | None = None,
    ) -> None:
        self._get_access = get_access
        self.log = log
        self.connect_timeout = connect_timeout
        self.give_up_after = give_up_after
        self.name = name
        self._delay = backoff_delays(1.0, max_backoff)
        self.room: rtc.Room | None = None
        self.access: SfuAccess | None = None
        self.state: State = "idle"
        self.on_state: Hooks[[State, str | None]] = Hooks(self.log, "connection state")
        self.on_lost: Hooks[[str]] = Hooks(self.log, "connection lost")
        self.on_reconnected: Hooks[[rtc.Room]] = Hooks(self.log, "reconnected")
        self.after_connect: list[AfterConnect] = []
        self.encryption: rtc.E2EEOptions | None = None
        self.frame_keys: FrameKeys | None = None
        self.use_frame_keys(frame_keys)
        self._setup: Setup | None = None
        self._options: dict[str, Any] = {}
        self._closing = False
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # held while a room.connect is in flight
        self._reconnect_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.reconnects = 0

    # -- public ----------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.state == "connected" and self.room is not None and self.room.isconnected()

    @property
    def reconnecting(self) -> bool:
        """After an SFU loss: a new room is being connected (with backoff)."""
        return self._reconnect_task is not None and not self._reconnect_task.done()

    async def connect(
        self,
        *,
        auto_subscribe: bool = True,
        setup: Setup | None = None,
        encryption: rtc.E2EEOptions | None = None,
    ) -> rtc.Room:
        """Fetch access and connect; raises SfuConnectError (or SfuAuthError from get_access)."""
        if self.room is not None or self._reconnect_task is not None:
            raise RuntimeError(f"{self.name} is already connected")
        self._closing = False
        self._setup = setup
        # Kept for every reconnect: an encrypted call's rooms are all encrypted.
        self._options = {
            "auto_subscribe": auto_subscribe,
            "encryption": encryption or self.encryption,
        }
        self._set_state("connecting", None)
        try:
            room = await self._connect_once()
        except (SfuConnectError, SfuAuthError) as exc:
            self._set_state("failed", exc.message)
            raise
        self._set_state("connected", None)
        return room

    def use_frame_keys(self, keys: FrameKeys | None) -> None:
        """Connect from now on with frame encryption and this key ring (None: without)."""
        if self.frame_keys is not None:
            with contextlib.suppress(ValueError):
                self.after_connect.remove(self.frame_keys.attach)
        self.frame_keys = keys
        self.encryption = keys.options() if keys is not None else None
        if keys is not None:
            self.after_connect.append(keys.attach)

    async def close(self) -> None:
        """Leave the room; stops any reconnection. Safe to call more than once."""
        self._closing = True
        self._wake.set()
        task = self._reconnect_task
        if task is not None and task is not asyncio.current_task():
            # Not cancelled: the task may be inside room.connect (see module docstring).
            with contextlib.suppress(Exception):
                await task
        async with self._lock:
            room, self.room = self.room, None
            if room is not None:
                await release_room(room)
        for t in list(self._tasks):
            if not t.done():
                t.cancel()
        self._set_state("closed", None)

    # -- connecting ------------------------------------------------------------------------
    async def _connect_once(self) -> rtc.Room:
        access = await self._get_access()
        async with self._lock:
            if self._closing:
                raise SfuConnectError("unknown", "The connection was closed while connecting.")
            self.access = access
            room = rtc.Room()
            if self._setup is not None:
                self._setup(room)
            room.on("disconnected", lambda reason: self._on_disconnected(room, reason))
            room.on("reconnecting", lambda: self._on_sdk_reconnecting(room))
            room.on("reconnected", lambda: self._on_sdk_reconnected(room))
            options = rtc.RoomOptions(
                auto_subscribe=self._options.get("auto_subscribe", True),
                encryption=self._options.get("encryption"),
                connect_timeout=self.connect_timeout,
            )
            # Shielded: cancelling our caller must not cancel the native connect.
            task = asyncio.ensure_future(room.connect(access.url, access.jwt, options))
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                task.add_done_callback(lambda t: self._spawn(self._drop_room(room, t)))
                raise
            except rtc.ConnectError as exc:
                raise await self._classify(access, exc) from None
            if self._closing:
                await release_room(room)
                raise SfuConnectError("unknown", "The connection was closed while connecting.")
            self.room = room
            for hook in list(self.after_connect):
                try:
                    hook(room)
                except Exception:
                    self.log.exception("%s: after_connect hook failed", self.name)
        self.log.info(
            "%s connected to LiveKit room %s as %s%s",
            self.name,
            access.room,
            access.identity,
            " (media end-to-end encrypted)" if self._options.get("encryption") else "",
        )
        return room

    async def _drop_room(self, room: rtc.Room, task: asyncio.Future[None]) -> None:
        if not task.cancelled() and task.exception() is None:
            await release_room(room)

    async def _classify(self, access: SfuAccess, exc: rtc.ConnectError) -> SfuConnectError:
        raw = str(getattr(exc, "message", "") or exc)
        detail = scrub(raw, access.jwt)
        status = status_from_error(raw)
        checked = None
        if status is None:
            checked = await validate_status(access)
        kind, code = classify_connect_error(detail, status, validate_status=checked)
        message = connect_error_message(kind, code, detail)
        self.log.warning("%s: %s (%s)", self.name, message, kind)
        return SfuConnectError(kind, message, status=code, detail=detail)

    # -- events from the SDK ---------------------------------------------------------------
    def _on_sdk_reconnecting(self, room: rtc.Room) -> None:
        if room is self.room and not self._closing:
            self.log.warning("%s: the connection to the SFU was interrupted; resuming", self.name)
            self._set_state("reconnecting", "The connection to the SFU was interrupted.")

    def _on_sdk_reconnected(self, room: rtc.Room) -> None:
        if room is self.room and not self._closing:
            self.log.info("%s: the connection to the SFU is resumed", self.name)
            self._set_state("connected", None)

    def _on_disconnected(self, room: rtc.Room, reason: int) -> None:
        if self._closing or room is not self.room or reason == _REASON.CLIENT_INITIATED:
            return
        final = _FINAL_REASONS.get(reason)
        name = _REASON.Name(reason) if reason in _REASON.values() else str(reason)  # type: ignore[arg-type]
        message = (
            f"Lost the connection to the LiveKit SFU: {final}."
            if final
            else f"Lost the connection to the LiveKit SFU ({name.lower()}); reconnecting."
        )
        self.log.warning("%s: %s", self.name, message)
        self._set_state("lost", message)
        self.on_lost.notify(message)
        if final:
            self.room = None
            self._spawn(release_room(room))
            self._set_state("closed", message)
            return
        self._reconnect_task = asyncio.ensure_future(self._reconnect(room))

    async def _reconnect(self, old: rtc.Room) -> None:
        started = time.monotonic()
        self.room = None
        await release_room(old)
        attempt = 0
        try:
            while not self._closing:
                delay = self._delay(attempt)
                attempt += 1
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                if self._closing:
                    return
                self._set_state("reconnecting", f"Reconnecting to the SFU (attempt {attempt}).")
                try:
                    room = await self._connect_once()
                except (SfuConnectError, SfuAuthError) as exc:
                    waited = time.monotonic() - started
                    if self.give_up_after is not None and waited >= self.give_up_after:
                        message = (
                            f"Gave up reconnecting to the LiveKit SFU after {waited:.0f} s: "
                            f"{exc.message}"
                        )
                        self.log.error("%s: %s", self.name, message)
                        self._set_state("failed", message)
                        return
                    self.log.info(
                        "%s: reconnect attempt %d failed: %s", self.name, attempt, exc.message
                    )
                    continue
                except Exception:
                    self.log.exception("%s: reconnect attempt %d crashed", self.name, attempt)
                    continue
                self.reconnects += 1
                self._set_state("connected", None)
                await self.on_reconnected.emit(room)
                return
        finally:
            if self._reconnect_task is asyncio.current_task():
                self._reconnect_task = None

    # -- helpers ---------------------------------------------------------------------------
    def _set_state(self, state: State, detail: str | None) -> None:
        if state == self.state and detail is None:
            return
        self.state = state
        self.on_state.notify(state, detail)

    def _spawn(self, aw: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(aw)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
