"""CallManager with fakes at its ports: a homeserver that answers state reads and takes the
bot's messages, a fake clock, a publisher factory. What is asserted is what the room reads
(the notices) and what the bot does with its own membership."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from mautrix.errors import MNotFound
from mautrix.types import EventID, RoomID, StateEvent

from rtcbot.calls.manager import CallManager, NoCall
from rtcbot.context import BotContext
from rtcbot.matrix.notices import Notices
from rtcbot.matrix.publisher import State
from rtcbot.metrics import Metrics
from rtcbot.rtc.membership import CALL_MEMBER_TYPE
from rtcbot.rtc.own_content import livekit_transport, session_content
from rtcbot.rtc.session import CallEnded, CallEvent, CallStarted
from rtcbot.rtc.state_keys import make_state_key
from rtcbot.settings import Settings
from rtcbot.tasks import Tasks

T0 = 1_760_000_000_000
ROOM = "!room:example.org"
BOT = "@rtcbot:example.org"
ALICE, BOB = "@alice:example.org", "@bob:example.org"
SFU = "https://rtc.example.org/livekit/jwt"
HOUR = 3_600_000


def member(user: str, *, device: str = "DEV", expires_ms: int = 4 * HOUR, ts: int = T0) -> dict:
    content = session_content(
        user, device, [livekit_transport(SFU, ROOM)], intent="audio", expires_ms=expires_ms
    )
    return state_event(user, make_state_key(user, device, "m.call", ""), content, ts)


def gone(user: str, *, device: str = "DEV", ts: int = T0) -> dict:
    return state_event(user, make_state_key(user, device, "m.call", ""), {}, ts)


def state_event(sender: str, key: str, content: dict, ts: int = T0) -> dict:
    return {
        "type": CALL_MEMBER_TYPE,
        "room_id": ROOM,
        "state_key": key,
        "sender": sender,
        "content": content,
        "origin_server_ts": ts,
        "event_id": f"${sender}-{key}-{ts}-{len(content)}",
    }


class NotEncrypted:
    async def is_encrypted(self, room_id: RoomID) -> bool:
        return False

    async def get_member(self, room_id: RoomID, user_id: str) -> Any:
        return None  # not in the store: asked from the server


class Homeserver:
    """The client's side of the homeserver: room state it answers from, messages it takes."""

    def __init__(self) -> None:
        self.mxid = BOT
        self.device_id = "BOTDEVICE"
        self.crypto = None
        self.state_store = NotEncrypted()
        self.api = self
        self.state: list[dict[str, Any]] = [
            {"type": "m.room.member", "state_key": u, "content": {"membership": "join"}}
            for u in (BOT, ALICE, BOB)
        ]
        self.sent: list[str] = []
        self.state_reads = 0
        self.state_fails = False

    async def request(self, method: Any, path: Any, **_: Any) -> Any:
        assert str(path).endswith("/state"), path
        self.state_reads += 1
        if self.state_fails:
            raise MNotFound("no such room", 404)
        return list(self.state)

    async def get_state_event(self, room_id: Any, event_type: Any, key: str = "", **_: Any) -> Any:
        raise MNotFound("no display names here", 404)

    async def send_message(self, room_id: RoomID, content: Any) -> EventID:
        self.sent.append(str(content.serialize()["body"]))
        return EventID(f"$sent{len(self.sent)}")


@dataclass
class FakeClock:
    now: int = T0

    def __call__(self) -> int:
        return self.now


@dataclass
class Db:
    own_calls_: dict[str, str] = field(default_factory=dict)

    async def get_notify_level(self, room_id: str) -> str | None:
        return None

    async def add_own_call(self, room_id: str, intent: str) -> None:
        self.own_calls_[room_id] = intent

    async def remove_own_call(self, room_id: str) -> None:
        self.own_calls_.pop(room_id, None)


class FakePublisher:
    def __init__(self, room_id: str) -> None:
        self.room_id = room_id
        self.state = State.IDLE
        self.joins: list[str] = []
        self.left = False
        self.closed = False

    async def join(self, intent: str) -> None:
        self.joins.append(intent)
        self.state = State.JOINED

    async def leave(self) -> None:
        self.left = True
        self.state = State.IDLE

    async def close(self) -> None:
        self.closed = True


@dataclass
class Bench:
    manager: CallManager
    server: Homeserver
    clock: FakeClock
    db: Db
    publishers: list[FakePublisher]
    told: list[tuple[str, CallEvent]]

    async def feed(self, raw: dict[str, Any]) -> None:
        await self.manager.on_call_member(StateEvent.deserialize(raw))

    async def settle(self) -> None:
        """Let the background work the manager started (observers, leaving) finish."""
        for task in self.manager.ctx.tasks.running():
            await task


def bench(settings: Settings | None = None) -> Bench:
    server, clock, db = Homeserver(), FakeClock(), Db()
    log = logging.getLogger("test.calls")
    current = settings or Settings()
    ctx = BotContext(
        client=server,  # type: ignore[arg-type]
        http=None,  # type: ignore[arg-type]
        db=db,  # type: ignore[arg-type]
        notices=Notices(server),  # type: ignore[arg-type]
        metrics=Metrics(),
        log=log,
        settings=lambda: current,
        tasks=Tasks(log),
    )
    publishers: list[FakePublisher] = []

    async def new_publisher(room_id: str) -> Any:
        publishers.append(FakePublisher(room_id))
        return publishers[-1]

    async def no_transport() -> str:
        return ""

    manager = CallManager(
        ctx,
        no_transport,
        clock=clock,
        new_publisher=new_publisher,
        own_calls=db,  # type: ignore[arg-type]
    )
    told: list[tuple[str, CallEvent]] = []

    async def observer(room_id: str, ev: CallStarted | CallEnded) -> None:
        told.append((room_id, ev))

    manager.observers.append(observer)
    return Bench(manager, server, clock, db, publishers, told)


async def test_the_first_person_starts_the_call_and_it_is_announced_once() -> None:
    b = bench()
    await b.feed(member(ALICE))
    await b.feed(member(BOB, ts=T0 + 1))
    await b.settle()
    started = [s for s in b.server.sent if "started" in s]
    assert started == ["📞 alice started a voice call"], b.server.sent
    assert [type(ev) for _, ev in b.told] == [CallStarted]
    assert await b.manager.has_people(ROOM)


async def test_the_call_ends_when_the_last_person_leaves_and_observers_hear_it_in_order() -> None:
    b = bench()
    await b.feed(member(ALICE))
    b.clock.now += 90_000
    await b.feed(gone(ALICE, ts=b.clock.now))
    await b.settle()
    assert [type(ev) for _, ev in b.told] == [CallStarted, CallEnded]
    assert b.server.sent == ["📞 alice started a voice call", "Call ended after 1 min · 1 person"]
    assert not await b.manager.has_people(ROOM)


async def test_joins_wait_for_their_window_and_go_out_as_one_line() -> None:
    b = bench()
    await b.feed(member(ALICE))
    b.clock.now += 60_000
    await b.manager._tick()  # the window the start opened closes (nothing else in it)
    await b.feed(member(BOB, ts=b.clock.now))
    await b.manager._tick()
    assert b.server.sent == ["📞 alice started a voice call"]  # bob's join waits
    b.clock.now += int(Settings().notices.batch_seconds * 1000)
    await b.manager._tick()
    assert b.server.sent == ["📞 alice started a voice call", "bob joined"]


async def test_a_membership_that_expires_ends_the_call_on_the_next_tick() -> None:
    b = bench()
    await b.feed(member(ALICE, expires_ms=60_000))
    await b.manager._tick()
    await b.settle()
    assert [type(ev) for _, ev in b.told] == [CallStarted]  # not yet expired
    b.clock.now += 61_000
    await b.manager._tick()
    await b.settle()
    assert [type(ev) for _, ev in b.told] == [CallStarted, CallEnded]


async def test_the_bots_own_membership_is_not_a_person_in_the_call() -> None:
    b = bench()
    await b.feed(member(BOT))
    await b.settle()
    assert b.told == [] and b.server.sent == []
    assert not await b.manager.has_people(ROOM)


async def test_malformed_membership_content_is_skipped_without_a_crash() -> None:
    b = bench()
    key = make_state_key(ALICE, "DEV", "m.call", "")
    for content in (
        {"application": 7},
        {"foci_preferred": "not a list", "application": "m.call"},
        {"call_id": None, "device_id": ["x"], "expires": "soon"},
    ):
        await b.feed(state_event(ALICE, key, content))
    assert b.told == [] and b.server.sent == []
    await b.feed(member(ALICE))  # a good one after the bad ones still counts
    await b.settle()
    assert [type(ev) for _, ev in b.told] == [CallStarted]


async def test_the_bot_does_not_start_a_call_alone_and_says_what_to_do() -> None:
    b = bench()
    try:
        await b.manager.require_call(ROOM)
    except NoCall as e:
        sentence = str(e)
    else:
        raise AssertionError("joined an empty room's call")
    command = f"!{Settings().command}"
    assert "no call in this room" in sentence and f"`{command} auto record`" in sentence
    assert b.publishers == []


async def test_the_bot_leaves_when_everyone_else_has_left_and_forgets_to_rejoin() -> None:
    b = bench()
    b.manager.client.get_state_event = power_levels  # type: ignore[method-assign]
    await b.feed(member(ALICE))
    pub = await b.manager.join(ROOM, "audio")
    assert pub is b.publishers[0] and b.publishers[0].joins == ["audio"]
    assert b.db.own_calls_ == {ROOM: "audio"}  # rejoined after a restart
    await b.feed(gone(ALICE, ts=T0 + 5_000))
    await b.settle()
    assert b.publishers[0].left and b.publishers[0].closed
    assert b.db.own_calls_ == {} and b.manager.publisher(ROOM) is None


async def test_a_room_whose_state_cannot_be_read_is_read_again_next_time() -> None:
    b = bench()
    b.server.state_fails = True
    assert (await b.manager.room(ROOM)).call() is None
    b.server.state_fails = False
    b.server.state.append(member(ALICE))
    assert (await b.manager.room(ROOM)).call() is not None
    assert b.server.state_reads == 2


async def test_forgetting_a_room_closes_the_publisher_and_drops_what_was_known() -> None:
    b = bench()
    b.manager.client.get_state_event = power_levels  # type: ignore[method-assign]
    await b.feed(member(ALICE))
    await b.manager.join(ROOM)
    await b.manager.forget_room(ROOM)
    assert b.publishers[0].closed and ROOM not in b.manager.rooms
    assert b.db.own_calls_ == {} and b.manager.status_json() == []


async def power_levels(room_id: Any, event_type: Any, key: str = "", **kw: Any) -> Any:
    """The power levels and the create event of a room where the bot may write calls."""
    from mautrix.types import PowerLevelStateEventContent

    if str(event_type) == "m.room.power_levels":
        return PowerLevelStateEventContent.deserialize(
            {"users": {BOT: 100}, "users_default": 0, "events": {}, "state_default": 50}
        )
    return StateEvent.deserialize(
        {
            "type": "m.room.create",
            "room_id": ROOM,
            "state_key": "",
            "sender": ALICE,
            "content": {"room_version": "10", "creator": ALICE},
            "origin_server_ts": T0,
            "event_id": "$create",
        }
    )
