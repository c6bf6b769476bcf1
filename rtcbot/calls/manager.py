"""Follows calls in every room and keeps the bot's own memberships: the Matrix side of rtc/.

Sync events arrive at this class's own handlers; the pure core (rtc/session.py) decides what
they mean; this class posts the notices (batched), tells its observers when a call starts or
ends, and runs one MembershipPublisher per room the bot is in a call in.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from maubot.handlers import event
from mautrix.api import Method, Path
from mautrix.client import SyncStream
from mautrix.errors import MatrixRequestError
from mautrix.types import EventType, Membership, RoomID, StateEvent, UserID

from ..context import BotContext
from ..matrix.delayed_events import DelayedEvents, DelayedEventsSupport
from ..matrix.megolm_sender import megolm_sender_device
from ..matrix.membership_wire import StickyWire
from ..matrix.permissions import check_call_permission, explain_bot
from ..matrix.publisher import MembershipPublisher, PublishError, State
from ..ports import CallObserver, HomeTransport
from ..rtc.membership import (
    CALL_MEMBER_TYPE,
    RTC_MEMBER_STABLE_TYPE,
    RTC_MEMBER_TYPE,
    names_no_device,
)
from ..rtc.own_content import transport_entry
from ..rtc.session import CallEnded, CallEvent, CallStarted, RoomCalls
from ..tasks import Hooks, Periodic
from .clock import now_ms
from .notices import CallNotices
from .store import OwnCallStore

# Makes the publisher of the bot's membership in a room (a fake one in unit tests).
PublisherFactory = Callable[[str], Awaitable[MembershipPublisher]]

CALL_MEMBER = EventType.find(CALL_MEMBER_TYPE, EventType.Class.STATE)


class NoCall(PublishError):
    """Nobody is in a call in the room; the sentence says what to do."""


RTC_MEMBER = EventType.find(RTC_MEMBER_TYPE, EventType.Class.MESSAGE)
RTC_MEMBER_STABLE = EventType.find(RTC_MEMBER_STABLE_TYPE, EventType.Class.MESSAGE)


class CallManager:
    """Satisfies ports.CallMembership for the other managers."""

    def __init__(
        self,
        ctx: BotContext,
        home_transport: HomeTransport,
        *,
        clock: Callable[[], int] = now_ms,
        new_publisher: PublisherFactory | None = None,
        own_calls: OwnCallStore | None = None,
    ) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.home_transport = home_transport
        self.clock = clock
        # The calls the bot means to be in, rejoined after a restart.
        self.own_calls = own_calls or OwnCallStore(ctx.db.db)
        self.log = ctx.logger("calls")
        self.rooms: dict[str, RoomCalls] = {}
        self.publishers: dict[str, MembershipPublisher] = {}
        self.notices = CallNotices(ctx, clock)
        # Told when people start or end a call (the media roles' auto-follow subscribes).
        self.observers: list[CallObserver] = []
        # Told of every derived event (joins and leaves too) at once, in order, before any
        # await (the call card's log); must not block.
        self.event_observers: Hooks[[str, CallEvent]] = Hooks(self.log, "call event observers")
        self.delayed = DelayedEvents(self.client)
        self.new_publisher = new_publisher or self._real_publisher
        self._support: DelayedEventsSupport | None = None
        self._room_locks: dict[str, asyncio.Lock] = {}
        self._ticker = Periodic(self._tick, lambda: 1.0, self.log, "call ticker")

    async def start(self) -> None:
        self._ticker.start()
        self.ctx.tasks.spawn(self.rejoin_after_restart(), "rejoin-after-restart")

    async def stop(self) -> None:
        await self._ticker.stop()
        # A graceful stop leaves every call at once (the delayed leave is sent now).
        pubs = list(self.publishers.values())
        self.publishers.clear()
        await asyncio.gather(*(p.leave() for p in pubs), return_exceptions=True)
        await asyncio.gather(*(p.close() for p in pubs), return_exceptions=True)

    # -- CallDirectory -----------------------------------------------------------------------
    def publisher(self, room_id: str) -> MembershipPublisher | None:
        return self.publishers.get(room_id)

    async def has_people(self, room_id: str) -> bool:
        """Whether a call with at least one person (not the bot) is going on in the room."""
        call = (await self.room(room_id)).call()
        return call is not None and any(u != self.ctx.user_id for u in call.user_ids())

    async def require_call(self, room_id: str) -> None:
        """The bot never starts a call alone (unless calls.bot_may_start): raise NoCall with
        what to do instead."""
        if self.ctx.settings().calls.bot_may_start or await self.has_people(room_id):
            return
        prefix = f"!{self.ctx.settings().command}"
        raise NoCall(
            "There is no call in this room right now, and I don't start calls by myself. "
            "Start the call first (in Element: the call button at the top of the room), then "
            f"ask me again; or `{prefix} auto record` / `{prefix} auto announce` and I'll join "
            "every call here when it starts."
        )

    def known_name(self, room_id: str, user_id: str) -> str | None:
        return self.notices.known_name(room_id, user_id)

    async def display_name(self, room_id: str, user_id: str) -> str:
        return await self.notices.display_name(room_id, user_id)

    def member_by_identity(self, room_id: str, identity: str) -> tuple[str, str] | None:
        calls = self.rooms.get(room_id)
        call = calls.call() if calls is not None else None
        member = call.member_by_identity(identity) if call is not None else None
        return (member.user_id, member.device_id) if member is not None else None

    # -- room models -------------------------------------------------------------------------
    def _lock(self, room_id: str) -> asyncio.Lock:
        return self._room_locks.setdefault(room_id, asyncio.Lock())

    async def room(self, room_id: str, skip_key: str | None = None) -> RoomCalls:
        """The call model of a room, rebuilt silently from the current state on first use
        (old news is not announced again). `skip_key`: a state key the caller applies itself."""
        calls = self.rooms.get(room_id)
        if calls is not None:
            return calls
        calls = RoomCalls(room_id, on_invalid=self._log_invalid)
        try:
            state = await self.client.api.request(Method.GET, Path.v3.rooms[room_id].state)
            joined = {
                e["state_key"]
                for e in state
                if e.get("type") == "m.room.member"
                and (e.get("content") or {}).get("membership") == "join"
            }
            members = [
                e
                for e in state
                if e.get("type") == CALL_MEMBER_TYPE
                and e.get("state_key") != skip_key
                and e.get("sender") != self.client.mxid
            ]
            calls.rebuild(members, joined, self.clock())
        except Exception as e:
            # Not cached: the next event or command reads the state again.
            self.log.warning("could not read the state of %s: %s", room_id, e)
            return calls
        self.rooms[room_id] = calls
        return calls

    def _log_invalid(self, result: Any, event: Any) -> None:
        # Foreign clients send all sorts of content: skip it quietly, but leave a trace.
        self.log.debug("skipped call membership %s: %s", event.get("state_key"), result.reason)

    @event.on(CALL_MEMBER)
    async def on_call_member(self, evt: StateEvent) -> None:
        room_id = str(evt.room_id)
        raw = evt.serialize()
        source: SyncStream | None = getattr(evt, "source", None)
        if source is not None and source & SyncStream.STATE:
            if not await self._still_current(room_id, raw):
                return
        if evt.state_key.startswith(f"_{self.client.mxid}_") or evt.sender == self.client.mxid:
            # The bot is not one of the people in the call: its own membership only concerns
            # its publisher (and !call status), not the announcements or the call's lifetime.
            if room_id in self.publishers:
                # Written by someone else (an admin can write any state key): it is not the
                # bot's membership, so the bot's is gone and is put back (review L4).
                mine = evt.sender == self.client.mxid
                content = (raw.get("content") or {}) if mine else {}
                self.publishers[room_id].on_own_state(content, raw.get("origin_server_ts"))
            return
        async with self._lock(room_id):
            calls = await self.room(room_id, skip_key=str(evt.state_key))
            derived = calls.apply_state(raw, self.clock())
        self.log.debug("call.member %s in %s → %s", evt.state_key, room_id, derived)
        await self._handle(room_id, derived, origin_ts=raw.get("origin_server_ts"))

    async def _still_current(self, room_id: str, raw: dict[str, Any]) -> bool:
        """Whether a call.member event from a sync's `state` section is still the current
        state of its key. That section is the state *before* the sync's timeline, and Synapse
        has put a member's old join there in the sync after the one whose timeline brought
        their leave (Element Call's hang-up): applied, it started the ended call again. The
        timeline brings every change in order; the state section matters after a gap in it."""
        key = str(raw.get("state_key"))
        try:
            current = await self.client.api.request(
                Method.GET,
                Path.v3.rooms[room_id].state[CALL_MEMBER_TYPE][key],
                query_params={"format": "event"},
            )
        except MatrixRequestError as e:
            if e.http_status == 404:
                return False
            # Unknown: read the whole room again when it is next needed (no notices then).
            self.log.warning("could not check call.member %s in %s: %s", key, room_id, e)
            self.rooms.pop(room_id, None)
            return False
        if isinstance(current, dict) and "event_id" in current:
            same = current["event_id"] == raw.get("event_id")
        else:  # a server that ignores format=event answers with the content alone
            same = current == (raw.get("content") or {})
        if not same:
            self.log.debug("skipped an outdated call.member %s in %s", key, room_id)
        return same

    @event.on(RTC_MEMBER_STABLE)
    async def on_current_member(self, evt: Any) -> None:
        await self._sticky_member(evt)

    @event.on(RTC_MEMBER)
    async def on_sticky_member(self, evt: Any) -> None:
        await self._sticky_member(evt)

    async def _sticky_member(self, evt: Any) -> None:
        room_id = str(evt.room_id)
        if evt.sender == self.client.mxid:
            return
        raw = evt.serialize()
        device = None
        if names_no_device(raw.get("content")):  # MSC4143 current: from the decryption
            device = await megolm_sender_device(
                self.client, room_id, str(evt.event_id), str(evt.sender)
            )
        async with self._lock(room_id):
            calls = await self.room(room_id)
            derived = calls.apply_sticky(raw, self.clock(), device_hint=device)
        await self._handle(room_id, derived)

    @event.on(EventType.ROOM_MEMBER)
    async def on_room_member(self, evt: StateEvent) -> None:
        if evt.state_key == self.client.mxid:
            return  # the bot's own membership: calls/invites.py and the lifecycle handle it
        room_id = str(evt.room_id)
        # A rename: also while no call model is loaded (a name may be cached all the same).
        self.notices.name_changed(room_id, str(evt.state_key))
        if room_id not in self.rooms:
            return
        content = evt.content
        async with self._lock(room_id):
            calls = self.rooms[room_id]
            if calls.joined is None:  # membership unknown: don't pretend everyone left
                return
            joined = set(calls.joined)
            if getattr(content, "membership", None) == Membership.JOIN:
                joined.add(str(evt.state_key))
            else:
                joined.discard(str(evt.state_key))
            derived = calls.set_joined_members(joined, self.clock())
        await self._handle(room_id, derived)

    async def _tick(self) -> None:
        now = self.clock()
        for room_id, calls in list(self.rooms.items()):
            # Only rooms with a membership due to expire need the sweep (1 000 idle
            # rooms would otherwise be recomputed every second).
            due = calls.next_expiry_ms()
            if due is None or due > now:
                continue
            derived = calls.tick(now)
            if derived:
                await self._handle(room_id, derived)
        await self.notices.flush(now)

    async def _handle(
        self, room_id: str, derived: list[Any], origin_ts: int | None = None
    ) -> None:
        if not derived:
            return
        # Before any await, in the order they happened: the next event of the room may be
        # handled while this one awaits. (A join the batcher got after the call's end opened a
        # new window: "Alice joined" after "Call ended"; an observer told of the end before the
        # start recorded an ended call.)
        now = self.clock()
        for ev in derived:
            self.notices.add(ev, now)  # joins/leaves wait for their window
            self.event_observers.notify(room_id, ev)
            if not isinstance(ev, CallStarted | CallEnded):
                continue
            for observer in self.observers:
                self.ctx.tasks.spawn(observer(room_id, ev), "call-observer")
            if isinstance(ev, CallEnded) and room_id in self.publishers:
                # The last person left: the bot does not stay in an empty call.
                self.ctx.tasks.spawn(self._leave_ended(room_id), "leave-ended-call")
        calls = [ev for ev in derived if isinstance(ev, CallStarted | CallEnded)]
        if not calls:
            return
        # At once (nothing awaited above), so "started" is posted before "ended".
        await self.notices.post_calls(room_id, calls, origin_ts)

    # -- the bot's own membership ------------------------------------------------------------
    async def support(self) -> DelayedEventsSupport:
        if self._support is None:
            try:
                self._support = await self.delayed.support()
            except Exception as e:
                self.log.warning("could not read delayed-event support: %s", e)
                return DelayedEventsSupport(False, None)
        return self._support

    async def join(
        self, room_id: str, intent: str = "audio", remember: bool = True
    ) -> MembershipPublisher:
        """Publish the bot's membership; raises PublishError with a sentence for people
        (NoCall when nobody is in a call here). `remember`: rejoin after a restart (a
        membership that only accompanies a media role is not: without the role, clients
        would show a tile waiting for media)."""
        perm = await check_call_permission(self.client, RoomID(room_id), UserID(self.client.mxid))
        if not perm.bot_can_join:
            raise PublishError(explain_bot(perm))
        await self.require_call(room_id)
        pub = self.publishers.get(room_id)
        if pub is None or pub.state == State.IDLE:
            pub = await self.new_publisher(room_id)
            self.publishers[room_id] = pub
        await pub.join(intent)
        if remember:
            await self.own_calls.add_own_call(room_id, intent)
        return pub

    def dialect_for(self, room_id: str) -> str:
        """The membership dialect the bot answers in here (membership.dialect; "auto": that
        of the call's longest-present member, Element Call's when nobody is in a call)."""
        wanted = self.ctx.settings().membership.dialect
        if wanted != "auto":
            return wanted
        calls = self.rooms.get(room_id)
        call = calls.call() if calls is not None else None
        members = sorted(call.members.values(), key=lambda m: m.since_ms) if call else []
        return members[0].membership.dialect if members else "element_call"

    async def _real_publisher(self, room_id: str) -> MembershipPublisher:
        support = await self.support()
        home = await self.home_transport()
        wire = None
        if self.dialect_for(room_id) == "current":
            # A member id of its own per membership (js-sdk's memberId): an earlier process's
            # delayed leave names another and cannot end this one.
            member_id = f"{self.ctx.device_id}-{secrets.token_hex(4)}"
            wire = StickyWire(self.client, member_id, transport_entry(home))
        return MembershipPublisher(
            self.delayed,
            room_id,
            self.ctx.user_id,
            self.ctx.device_id,
            self.ctx.settings().membership,
            [transport_entry(home, room_id)],
            self.ctx.logger("publisher"),
            max_delay_ms=support.max_delay_ms,
            delayed_events_usable=support.usable,
            on_heartbeat_failure=self.ctx.metrics.heartbeat_failures.inc,
            on_fallback=self.ctx.metrics.expiring_fallbacks.inc,
            wire=wire,
        )

    async def leave(self, room_id: str) -> bool:
        await self.own_calls.remove_own_call(room_id)
        pub = self.publishers.pop(room_id, None)
        if pub is None:
            return False
        await pub.leave()
        await pub.close()
        return True

    async def _leave_ended(self, room_id: str) -> None:
        async with self._lock(room_id):
            if await self.has_people(room_id):
                return  # someone joined again meanwhile
        if await self.leave(room_id):
            self.log.info("left the call in %s: everyone else left", room_id)

    async def forget_room(self, room_id: str) -> None:
        """The bot is no longer in the room: stop its publisher, drop what it knew there."""
        pub = self.publishers.pop(room_id, None)
        if pub is not None:
            await pub.close()
        await self.own_calls.remove_own_call(room_id)
        self.rooms.pop(room_id, None)
        self._room_locks.pop(room_id, None)
        self.notices.forget_room(room_id)

    def live_metrics(self) -> dict[str, float]:
        calls = [c for rc in self.rooms.values() for c in rc.calls.values()]
        return {
            "rtcbot_calls_active": len(calls),
            "rtcbot_call_members": sum(len(c.members) for c in calls),
            "rtcbot_own_memberships": len(self.publishers),
            "rtcbot_own_memberships_joined": sum(
                p.state == State.JOINED for p in self.publishers.values()
            ),
        }

    def status_json(self) -> list[dict[str, Any]]:
        out = []
        for room_id, rc in self.rooms.items():
            pub = self.publishers.get(room_id)
            if not rc.calls and pub is None:
                continue
            out.append(
                {
                    "room_id": room_id,
                    "calls": [
                        {
                            "application": c.application,
                            "slot_id": c.slot_id,
                            "started_at_ms": c.started_at_ms,
                            "people": len(c.user_ids()),
                            "devices": len(c.members),
                            "peak": c.peak_participants,
                        }
                        for c in rc.calls.values()
                    ],
                    "bot": None if pub is None else _publisher_json(pub),
                }
            )
        return out

    async def rejoin_after_restart(self) -> None:
        """Calls the bot meant to be in before a restart or crash: join them again."""
        for call in await self.own_calls.own_calls():
            if not self.ctx.settings().calls.bot_may_start and not await self.has_people(
                call.room_id
            ):
                # The call ended while the bot was away: nothing to go back to.
                await self.own_calls.remove_own_call(call.room_id)
                self.log.info("not rejoining %s: the call there has ended", call.room_id)
                continue
            try:
                await self.join(call.room_id, call.intent)
                self.log.info("rejoined the call in %s after a restart", call.room_id)
            except Exception as e:
                self.log.warning("could not rejoin the call in %s: %s", call.room_id, e)


def _publisher_json(pub: MembershipPublisher) -> dict[str, Any]:
    st = pub.status()
    return {
        "state": st.state.name.lower(),
        "mode": st.mode.name.lower() if st.mode else None,
        "delay_ms": st.delay_ms,
        "heartbeats_ok": st.heartbeats_ok,
        "heartbeat_failures": st.heartbeat_failures,
    }
