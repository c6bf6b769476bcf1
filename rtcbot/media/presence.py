"""The bot's one LiveKit participant in a call, shared by its roles (recorder, announcer).

Clients match LiveKit participants to call memberships by identity, and play or show only
those that match (Element Call: no membership → no tile, no sound). The bot has one
membership per call, so it is ONE participant there, with the identity of that membership
(`rtc.identity.member_identity`): the recorder subscribes through it, the announcer publishes
its microphone through it, and while either is active it publishes a status picture
(indicator.py) so its tile says "● Recording 01:23" or "Announcer", never "Waiting for media…".

Reference counting: `acquire(role)` connects on the first role, with a token that allows what
the roles held need and no more (tokens.grants_for) and names the participant
"rtcbot (recording)" / "rtcbot (announcer)"; a later role widens the live participant's
permissions with RoomService.UpdateParticipant (no reconnect, so a recording is not cut and
nobody sees the bot leave and come back); `release(role)` narrows them again, the last role
disconnects. A token from an authorization service carries the service's grants (lk-jwt-service
and ours give full-access users publish + subscribe); they are not changed, and a role the
token does not allow fails with a sentence saying so. After an SFU loss `Participant` connects
a new room with a fresh token for the roles held then; every role's `setup` runs for it and
the status track is published again before the roles' own `on_reconnected` callbacks
(announcer: its microphone; recorder: a new segment).

The media is subscribed by hand (`auto_subscribe` off): the recorder asks for audio tracks
only, so the bot never receives people's video, and an announcer holding a service token
that allows subscribing still receives nothing.

End-to-end encrypted calls (`keys`, e2ee/call_keys.py): before the first connect the call's
key ring is opened; in an encrypted call the participant connects with frame encryption and
every room it connects gets every key before the status picture or a microphone is published
(frame_keys.py). Without key machinery in an encrypted call the bot does not connect at all:
it would record silence and speak where nobody can decrypt it. The key ring is closed when
the participant leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from livekit import rtc

from rtcbot.media.connect_errors import SfuConnectError
from rtcbot.media.frame_keys import FrameKeys
from rtcbot.media.indicator import Indicator, Label, announcer_label, recording_label
from rtcbot.media.participant import (
    Participant,
    State,
)
from rtcbot.media.tokens import Role, Roles, SfuAccess, participant_name
from rtcbot.tasks import Hooks

AccessFor = Callable[[Roles, str], Awaitable[SfuAccess]]
# Change a connected participant's permissions (and name) to the roles' least privilege.
GrantsUpdater = Callable[[SfuAccess, Roles, str], Awaitable[Any]]
Setup = Callable[[rtc.Room], None]


class Keyrings(Protocol):
    """Frame keys per room (e2ee/call_keys.py: CallKeys)."""

    async def begin(self, room_id: str) -> FrameKeys | None: ...

    async def end(self, room_id: str) -> None: ...


@dataclass(frozen=True)
class CallKeyring:
    """The call's frame keys: `begin` opens them (None: the call is not encrypted; raises
    SfuConnectError when it is and the bot cannot take part encrypted), `end` closes them."""

    begin: Callable[[], Awaitable[FrameKeys | None]]
    end: Callable[[], Awaitable[None]]

    @classmethod
    def of(cls, keyrings: Keyrings, room_id: str) -> CallKeyring:
        return cls(lambda: keyrings.begin(room_id), lambda: keyrings.end(room_id))


_MIC = rtc.TrackSource.SOURCE_MICROPHONE


def missing_permission(perm: Any, roles: Roles) -> str | None:
    """What a live participant's permissions (LiveKit ParticipantPermission) lack for these
    roles, as words for people; None when they suffice. The status picture is not essential."""
    if "recorder" in roles and not perm.can_subscribe:
        return "subscribing to the call's audio (needed to record)"
    if "announcer" in roles:
        sources = set(perm.can_publish_sources)
        if not perm.can_publish or (sources and _MIC not in sources):
            return "publishing a microphone track (needed to speak)"
    return None


class CallPresence:
    """The bot in one LiveKit room: one participant, the roles that use it, its status track."""

    def __init__(
        self,
        access_for: AccessFor,
        log: logging.Logger,
        *,
        base_name: str = "rtcbot",
        update_grants: GrantsUpdater | None = None,
        indicator: bool = True,
        connect_timeout: float = 10,
        give_up_after: float | None = 900.0,
        clock: Callable[[], float] = time.monotonic,
        keys: CallKeyring | None = None,
    ) -> None:
        self.log = log
        self._keys = keys
        self.base_name = base_name
        self.roles: set[Role] = set()
        self._access_for = access_for
        self._update_grants = update_grants
        self._clock = clock
        self.participant = Participant(
            self._access, log, connect_timeout, give_up_after=give_up_after, name="bot"
        )
        self.participant.on_reconnected.add(self._on_reconnected)
        self.indicator = Indicator(self.label, log) if indicator else None
        self._setups: dict[Role, Setup] = {}
        self._lock = asyncio.Lock()
        self._pending = 0
        self._recording_since: float | None = None
        self.connects = 0  # connections made by acquire (not SFU-loss reconnects)
        self.grant_updates = 0  # live permission changes

    # -- what the bot is ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The LiveKit participant name for the roles held now."""
        return participant_name(self.base_name, self.roles)

    @property
    def idle(self) -> bool:
        """No role holds or is acquiring the participant: it is disconnected (or about to be)."""
        return not self.roles and self._pending == 0

    @property
    def identity(self) -> str | None:
        access = self.participant.access
        return access.identity if access is not None else None

    @property
    def frame_keys(self) -> FrameKeys | None:
        """The key ring while the bot is in an encrypted call, else None."""
        return self.participant.frame_keys

    def label(self) -> Label:
        if "recorder" in self.roles and self._recording_since is not None:
            return recording_label(self._clock() - self._recording_since, self.base_name)
        return announcer_label(self.base_name)

    def role(self, role: Role) -> RoleHandle:
        """A `Participant`-like view for one role (what Recorder and Announcer take)."""
        return RoleHandle(self, role)

    # -- roles -------------------------------------------------------------------------------
    async def acquire(self, role: Role, setup: Setup | None = None) -> rtc.Room:
        """Take part in the call in `role`: connect, or widen the connected participant's
        permissions; `setup` runs for the room now and for every room after an SFU loss.
        Raises SfuConnectError / SfuAuthError (nothing is held then)."""
        self._pending += 1
        try:
            async with self._lock:
                return await self._acquire(role, setup)
        finally:
            self._pending -= 1

    async def release(self, role: Role) -> None:
        """End `role`: narrow the permissions to the other roles, or leave if it was the last."""
        async with self._lock:
            if role not in self.roles:
                return
            self._drop(role)
            if not self.roles:
                await self._disconnect()
                return
            if self.participant.room is not None:
                try:
                    await self._apply_grants()
                except Exception as e:
                    # Not fatal: the wider grants stay until the next connection.
                    self.log.warning("could not narrow the bot's LiveKit permissions: %s", e)
            self._refresh()

    async def close(self) -> None:
        """Drop every role and leave (shutdown, or the bot left the room)."""
        async with self._lock:
            for role in list(self.roles):
                self._drop(role)
            await self._disconnect()

    # -- internals ---------------------------------------------------------------------------
    async def _access(self) -> SfuAccess:
        return await self._access_for(frozenset(self.roles), self.name)

    async def _acquire(self, role: Role, setup: Setup | None) -> rtc.Room:
        if role in self.roles:
            raise RuntimeError(f"the bot already takes part in this call as {role}")
        self.roles.add(role)
        if setup is not None:
            self._setups[role] = setup
        if role == "recorder":
            self._recording_since = self._clock()
        try:
            room = self.participant.room
            if room is None:
                if self.participant.reconnecting:
                    raise SfuConnectError(
                        "unreachable",
                        "I am reconnecting to the call's media server right now; "
                        "try again in a moment.",
                    )
                await self._open_keys()
                room = await self.participant.connect(auto_subscribe=False, setup=self._setup)
                self.connects += 1
                access = self.participant.access
                if access is not None and access.via != "local":
                    await self._check_service_grants(room)
                await self._publish_indicator(room)
                return room
            await self._apply_grants()
            if setup is not None:
                setup(room)
            self._refresh()
            return room
        except BaseException:
            self._drop(role)
            if not self.roles:
                await self._disconnect()
            elif self.participant.room is not None:
                with contextlib.suppress(Exception):
                    await self._apply_grants()
            raise

    def _drop(self, role: Role) -> None:
        self.roles.discard(role)
        self._setups.pop(role, None)
        if role == "recorder":
            self._recording_since = None

    async def _apply_grants(self) -> None:
        """Make the connected participant's permissions and name fit the roles held now."""
        access = self.participant.access
        roles = frozenset(self.roles)
        if access is not None and access.via == "local" and self._update_grants is not None:
            await self._update_grants(access, roles, self.name)
            self.grant_updates += 1
            self.log.info("LiveKit permissions of %s now for %s", access.identity, sorted(roles))
            return
        room = self.participant.room
        if room is not None:
            await self._check_service_grants(room)

    async def _check_service_grants(self, room: rtc.Room) -> None:
        """A service token's grants are the service's: check they allow the roles, and name
        the participant after them where the token allows that."""
        lacking = missing_permission(room.local_participant.permissions, frozenset(self.roles))
        if lacking:
            raise SfuConnectError(
                "not_authorised",
                f"The call's authorization service gave me a LiveKit token without {lacking}.",
            )
        await self._rename(room)

    async def _rename(self, room: rtc.Room) -> None:
        """With a service token the name can only be set by the participant itself, where
        the token allows that (lk-jwt-service: canUpdateOwnMetadata for full access)."""
        if not room.local_participant.permissions.can_update_metadata:
            return
        try:
            async with asyncio.timeout(5):
                await room.local_participant.set_name(self.name)
        except Exception as e:
            self.log.info("could not rename the bot's LiveKit participant: %s", e)

    def _setup(self, room: rtc.Room) -> None:
        for role, setup in list(self._setups.items()):
            try:
                setup(room)
            except Exception:
                self.log.exception("setting up the %s for a new LiveKit room failed", role)

    async def _on_reconnected(self, room: rtc.Room) -> None:
        if self.roles:
            await self._publish_indicator(room)

    async def _publish_indicator(self, room: rtc.Room) -> None:
        if self.indicator is None:
            return
        try:
            await self.indicator.publish(room)
        except Exception as e:
            # The roles work without it; the tile then shows the bot's avatar.
            self.log.warning("could not publish the bot's status picture: %s", e)

    def _refresh(self) -> None:
        if self.indicator is not None:
            with contextlib.suppress(Exception):
                self.indicator.refresh()

    async def _open_keys(self) -> None:
        if self._keys is not None:
            self.participant.use_frame_keys(await self._keys.begin())

    async def _disconnect(self) -> None:
        if self.indicator is not None:
            await self.indicator.close()
        await self.participant.close()
        if self.participant.frame_keys is not None:
            self.participant.frame_keys.close()
            self.participant.use_frame_keys(None)
        if self._keys is not None:  # also when opening them was interrupted
            try:
                await self._keys.end()
            except Exception:
                self.log.exception("closing the call's frame keys failed")


class RoleHandle:
    """One role's view of the shared participant, with the interface of `Participant` that
    Recorder and Announcer use: `connect` acquires the role, `close` releases it."""

    def __init__(self, presence: CallPresence, role: Role) -> None:
        self.presence = presence
        self.role = role
        self.log = presence.log

    @property
    def on_state(self) -> Hooks[[State, str | None]]:
        return self.presence.participant.on_state

    @property
    def on_lost(self) -> Hooks[[str]]:
        return self.presence.participant.on_lost

    @property
    def on_reconnected(self) -> Hooks[[rtc.Room]]:
        return self.presence.participant.on_reconnected

    @property
    def state(self) -> State:
        return self.presence.participant.state

    @property
    def room(self) -> rtc.Room | None:
        return self.presence.participant.room

    @property
    def access(self) -> SfuAccess | None:
        return self.presence.participant.access

    @property
    def frame_keys(self) -> FrameKeys | None:
        return self.presence.frame_keys

    async def connect(
        self,
        *,
        auto_subscribe: bool = False,
        setup: Setup | None = None,
        encryption: rtc.E2EEOptions | None = None,
    ) -> rtc.Room:
        if auto_subscribe or encryption is not None:
            # Frame encryption is the call's (CallPresence's key ring), not a role's.
            raise ValueError("the shared participant subscribes by hand; E2EE is the call's")
        return await self.presence.acquire(self.role, setup)

    async def close(self) -> None:
        await self.presence.release(self.role)
