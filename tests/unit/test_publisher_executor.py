"""The publisher runs its plan against a homeserver stand-in (delayed events and state in
memory): one loop, requests answered when their outcome is known."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from rtcbot.matrix.delayed_events import DelayedEventNotFound, RequestRefused
from rtcbot.matrix.membership_settings import MembershipSettings
from rtcbot.matrix.publisher import LeaveMode, MembershipPublisher, PublishError, State

ROOM, USER, DEVICE = "!r:example.org", "@rtcbot:example.org", "BOT"
# Short timings: the stand-in answers at once; the heartbeat is awaited, never a clock.
FAST = MembershipSettings(
    delayed_leave_ms=1_000, restart_interval_ms=100, expires_ms=60_000, fallback_expires_ms=5_000
)


class Homeserver:
    def __init__(self, delayed_events: bool = True) -> None:
        self.delayed_events = delayed_events
        self.state: dict[str, dict[str, Any]] = {}
        self.pending: dict[str, dict[str, Any]] = {}
        self.sent: list[str] = []
        self.restarts = 0
        self.beat = asyncio.Event()
        self.fail_puts = False
        self._n = 0

    async def list(self) -> list[dict[str, Any]]:
        return [dict(ev, delay_id=d) for d, ev in self.pending.items()]

    async def cancel(self, delay_id: str) -> None:
        self.pending.pop(delay_id, None)

    async def schedule_state(self, room: str, kind: str, key: str, content: Any, ms: int) -> str:
        if not self.delayed_events:
            raise RequestRefused("no", 400, "M_UNRECOGNIZED")
        self._n += 1
        self.pending[f"d{self._n}"] = {"room_id": room, "type": kind, "state_key": key}
        return f"d{self._n}"

    async def put_state(self, room: str, kind: str, key: str, content: Any) -> str:
        if self.fail_puts:
            raise RequestRefused("forbidden", 403, "M_FORBIDDEN")
        self.state[key] = content
        self._n += 1
        return f"$e{self._n}"

    async def get_event(self, room: str, event_id: str) -> dict[str, Any]:
        return {"origin_server_ts": int(time.time() * 1000)}

    async def restart(self, delay_id: str) -> None:
        if delay_id not in self.pending:
            raise DelayedEventNotFound("gone")
        self.restarts += 1
        self.beat.set()

    async def send(self, delay_id: str) -> None:
        ev = self.pending.pop(delay_id, None)
        if ev is None:
            raise DelayedEventNotFound("gone")
        self.state[ev["state_key"]] = {}
        self.sent.append(delay_id)


def publisher(hs: Homeserver, **kw: Any) -> MembershipPublisher:
    return MembershipPublisher(
        hs,  # type: ignore[arg-type]
        ROOM,
        USER,
        DEVICE,
        FAST,
        [{"type": "livekit", "livekit_service_url": "https://sfu.example/jwt"}],
        logging.getLogger("test.publisher"),
        **kw,
    )


async def test_join_beats_and_leave_sends_the_delayed_leave() -> None:
    hs = Homeserver()
    hs.pending["old"] = {
        "room_id": ROOM,
        "type": "org.matrix.msc3401.call.member",
        "state_key": f"_{USER}_{DEVICE}_m.call",
    }  # a killed process's
    pub = publisher(hs)
    await pub.join("audio")
    assert pub.state == State.JOINED and "old" not in hs.pending
    key = pub.state_key
    assert hs.state[key]["m.call.intent"] == "audio" and hs.state[key]["expires"] == 60_000
    await asyncio.wait_for(hs.beat.wait(), 10)
    await pub.leave()
    assert pub.state == State.IDLE and hs.state[key] == {} and len(hs.sent) == 1
    await pub.close()


async def test_a_removed_membership_is_put_back() -> None:
    hs = Homeserver()
    pub = publisher(hs)
    await pub.join()
    first = next(iter(hs.pending))
    hs.state[pub.state_key] = {}
    pub.on_own_state({}, origin_ts=int(time.time() * 1000) + 1)
    for _ in range(100):
        if hs.state[pub.state_key] and pub.state == State.JOINED:
            break
        await asyncio.sleep(0.01)
    assert hs.state[pub.state_key] and first not in hs.pending and pub.status().rejoins == 1
    await pub.close()


async def test_without_delayed_events_the_membership_expires_and_says_why() -> None:
    hs = Homeserver(delayed_events=False)
    pub = publisher(hs)
    await pub.join()
    st = pub.status()
    assert st.mode == LeaveMode.EXPIRING
    assert "refused delayed events" in (st.fallback_reason or "")
    assert hs.state[pub.state_key]["expires"] == 5_000
    await pub.close()


async def test_a_join_the_server_refuses_raises_a_sentence() -> None:
    hs = Homeserver()
    hs.fail_puts = True
    pub = publisher(hs)
    with pytest.raises(PublishError, match="could not publish the call membership"):
        await pub.join()
    assert pub.state == State.FAILED
    await pub.close()
