"""Delegated delayed leave on the real stack: a test user schedules a real MSC4140 delayed leave
on Synapse for her call membership (as Element Call does), a real LiveKit peer connects with a
token from rtcbot's authorization service, and the service is handed the leave.

What the room shows is asserted: the membership stays while the peer is connected (Synapse's
own timer would have ended it many times over; the leave's `delayed_since_ts` moves with every
restart), it ends within seconds of a disconnect (Synapse would wait 10 minutes), a peer that
never connects gets its leave sent, and a restart of the plugin keeps the job. Every delegation
carries a `delay_cs_api_url` pointing at a listener of the test, which must never be asked.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from mautrix.api import Method, Path
from mautrix.errors import MNotFound

from rtcbot.auth.store import DelegatedLeaveStore, StoredLeave
from rtcbot.db import DB
from rtcbot.rtc.leave_request import LeaveRequest
from rtcbot_stack.stack import Stack
from tests.integration.test_auth_service import auth_config, get_token_body, openid, post
from tests.integration.test_database import db, postgres_url  # noqa: F401 (fixtures)
from tests.stack.eventually import eventually
from tests.stack.matrix_user import CALL_MEMBER, MatrixUser, call_member_content
from tests.stack.peers import Peer

pytestmark = pytest.mark.stack

DELAYED = Path.unstable["org.matrix.msc4140"].delayed_events
DELAY_PARAM = "org.matrix.msc4140.delay"


@dataclass
class Forged:
    """A listener standing in for an attacker's `delay_cs_api_url`: it must stay unasked."""

    url: str
    hits: list[str]


@pytest.fixture
async def forged() -> AsyncIterator[Forged]:
    hits: list[str] = []

    async def anything(request: web.Request) -> web.Response:
        hits.append(f"{request.method} {request.path}")
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    found = Forged(str(server.make_url("")).rstrip("/"), hits)
    yield found
    await server.close()
    assert hits == [], f"the service contacted the delay_cs_api_url of a request: {hits}"


@dataclass
class Leave:
    user: MatrixUser
    room: str
    key: str
    delay_id: str
    scheduled_ts: int  # Synapse's delayed_since_ts when it was scheduled


async def join_with_delayed_leave(user: MatrixUser, room: str, delay_ms: int) -> Leave:
    """As Element Call joins: schedule the delayed leave (`{}`), then send the membership."""
    key = f"_{user.user_id}_{user.device_id}_m.call"
    resp = await user.put_state(room, CALL_MEMBER, key, {}, {DELAY_PARAM: str(delay_ms)})
    await user.put_state(room, CALL_MEMBER, key, call_member_content(user))
    leave = Leave(user, room, key, str(resp["delay_id"]), 0)
    entry = await pending(leave)
    assert entry is not None
    leave.scheduled_ts = restarted_at_ms(entry)
    return leave


async def membership(leave: Leave) -> dict[str, Any]:
    try:
        return dict(await leave.user.get_state_event(leave.room, CALL_MEMBER, leave.key))
    except MNotFound:
        return {}


async def pending(leave: Leave) -> dict[str, Any] | None:
    """The user's delayed leave as Synapse lists it (None once fired, sent or cancelled)."""
    resp = await leave.user.request(Method.GET, DELAYED)
    for d in resp.get("delayed_events", []):
        if d.get("delay_id") == leave.delay_id:
            return dict(d)
    return None


def restarted_at_ms(entry: dict[str, Any]) -> int:
    return int(entry.get("delayed_since_ts") or entry.get("running_since") or 0)


async def wait_until(what: str, check: Any, timeout: float) -> float:
    """Poll `check()` until it is true; return the seconds it took."""
    t0 = time.monotonic()
    while not await check():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(0.25)
    return time.monotonic() - t0


async def left(leave: Leave) -> bool:
    return await membership(leave) == {}


async def restarted_since(leave: Leave, ms: int) -> bool:
    entry = await pending(leave)
    return entry is not None and restarted_at_ms(entry) > ms


async def metric(stack: Stack, outcome: str) -> float:
    async with aiohttp.ClientSession() as s, s.get(f"{stack.auth_service_url}/metrics") as r:
        text = await r.text()
    m = re.search(rf'^rtcbot_delegated_leaves_total\{{outcome="{outcome}"\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def sfu_get_body(
    user: MatrixUser, room: str, token: dict[str, Any], **delay: Any
) -> dict[str, Any]:
    return {"room": room, "openid_token": token, "device_id": user.device_id, **delay}


async def connect_peer(stack: Stack, user: MatrixUser, room: str) -> Peer:
    """A LiveKit participant with the identity Element Call's compatibility mode has."""
    status, resp = await post(
        f"{stack.auth_service_url}/sfu/get", sfu_get_body(user, room, await openid(user))
    )
    assert status == 200, resp
    peer = Peer(f"{user.user_id}:{user.device_id}")
    await peer.connect(resp["url"], resp["jwt"])
    return peer


async def delegate_via_sfu_get(
    stack: Stack, leave: Leave, delay_ms: int, forged: Forged
) -> dict[str, Any]:
    body = sfu_get_body(
        leave.user,
        leave.room,
        await openid(leave.user),
        delay_id=leave.delay_id,
        delay_timeout=delay_ms,
        delay_cs_api_url=forged.url,
    )
    status, resp = await post(f"{stack.auth_service_url}/sfu/get", body)
    assert status == 200, resp
    return resp


# -- bad bodies ---------------------------------------------------------------------------------
async def test_bad_bodies_get_lk_jwt_services_answers(
    stack: Stack, alice: MatrixUser, bot_room: str, bot_id: str, forged: Forged
) -> None:
    url = f"{stack.auth_service_url}/delegate_delayed_leave"
    async with aiohttp.ClientSession() as s:
        async with s.post(url) as r:  # Element Call's probe: no body, no credentials
            assert r.status == 400 and r.headers["Access-Control-Allow-Origin"] == "*"
            assert await r.json() == {"errcode": "M_NOT_JSON", "error": "Error reading request"}
        async with s.get(url) as r:
            assert r.status == 405 and r.headers["Access-Control-Allow-Origin"] == "*"
        async with s.options(url, headers={"Access-Control-Request-Method": "POST"}) as r:
            assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "*"

    token = await openid(alice)
    full = {**get_token_body(bot_room, alice, token), "delay_cs_api_url": forged.url}
    status, resp = await post(url, full)  # no delay_id
    assert (status, resp["errcode"]) == (400, "M_BAD_JSON"), resp
    assert "delay_id" in resp["error"]
    status, resp = await post(url, {**full, "delay_id": "syd_x", "delay_timeout": "soon"})
    assert (status, resp["errcode"]) == (400, "M_BAD_JSON"), resp
    forged_token = {**token, "access_token": "forged" + token["access_token"][6:]}
    bad = {**full, "openid_token": forged_token, "delay_id": "syd_x", "delay_timeout": 5000}
    status, resp = await post(url, bad)
    assert (status, resp["errcode"]) == (401, "M_UNAUTHORIZED"), resp

    leave = await join_with_delayed_leave(alice, bot_room, 600_000)
    delegation = {**full, "delay_id": leave.delay_id, "delay_timeout": 600_000}
    with auth_config(stack, bot_id, full_access_homeservers=["other.example"]):
        status, resp = await post(url, delegation)
        assert (status, resp["errcode"]) == (403, "M_FORBIDDEN"), resp
        # On a token endpoint the same refusal is a 400, after which Element Call asks again
        # without the delay fields and gets its (subscribe-only) token.
        with_delay = sfu_get_body(
            alice, bot_room, token, delay_id=leave.delay_id, delay_timeout=600_000
        )
        status, resp = await post(f"{stack.auth_service_url}/sfu/get", with_delay)
        assert (status, resp["errcode"]) == (400, "M_BAD_JSON"), resp
        assert resp["error"] == (
            "Delegation of delayed events is only supported for full access users"
        )
        status, resp = await post(
            f"{stack.auth_service_url}/sfu/get", sfu_get_body(alice, bot_room, token)
        )
        assert status == 200, resp
    # Refused delegations took nothing over: the user's own leave is untouched.
    entry = await pending(leave)
    assert entry is not None and restarted_at_ms(entry) == leave.scheduled_ts


# -- the job on the real stack ------------------------------------------------------------------
async def test_while_the_peer_is_connected_the_leave_is_kept_from_firing(
    stack: Stack, alice: MatrixUser, bot_room: str, forged: Forged
) -> None:
    delay_ms = 5000  # the service's minimum
    peer = await connect_peer(stack, alice, bot_room)
    try:
        leave = await join_with_delayed_leave(alice, bot_room, delay_ms)
        await delegate_via_sfu_get(stack, leave, delay_ms, forged)
        # 4 delays long the membership stays: without restarts Synapse ends it after one.
        seen: list[int] = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < 4 * delay_ms / 1000:
            assert await membership(leave), "the membership ended while the peer was connected"
            entry = await pending(leave)
            assert entry is not None, "the delayed leave fired while the peer was connected"
            seen.append(restarted_at_ms(entry))
            await asyncio.sleep(0.5)
        restarts = sorted(set(seen))
        offsets = [t - leave.scheduled_ts for t in restarts]
        print(f"[delegated-leave] Synapse's timer (re)started at +{offsets} ms")
        assert len(restarts) >= 4, restarts  # at once, then every 4 s
    finally:
        await peer.close()
    took = await wait_until("the membership ends after the disconnect", lambda: left(leave), 20)
    print(f"[delegated-leave] membership gone {took:.1f} s after the peer disconnected")


async def test_a_disconnect_sends_the_leave_at_once(
    stack: Stack, alice: MatrixUser, bot_room: str, forged: Forged
) -> None:
    delay_ms = 600_000  # Synapse alone would end the membership after 10 minutes
    sent_before = await metric(stack, "sent")
    offset = stack.maubot.child.log_path.stat().st_size
    member_id = f"member-{alice.device_id}"
    token = await openid(alice)
    status, resp = await post(
        f"{stack.auth_service_url}/get_token", get_token_body(bot_room, alice, token)
    )
    assert status == 200, resp
    peer = Peer(member_id)
    await peer.connect(resp["url"], resp["jwt"])
    try:
        leave = await join_with_delayed_leave(alice, bot_room, delay_ms)
        # /delegate_delayed_leave with /get_token's fields: the job's identity is the hash
        # of (user, device, member id), the peer's identity.
        body = {
            **get_token_body(bot_room, alice, token),
            "delay_id": leave.delay_id,
            "delay_timeout": delay_ms,
            "delay_cs_api_url": forged.url,
        }
        status, answer = await post(f"{stack.auth_service_url}/delegate_delayed_leave", body)
        assert (status, answer) == (200, {})
        # The service found the peer on the SFU: its first restart moves Synapse's timer.
        await wait_until(
            "the first restart", lambda: restarted_since(leave, leave.scheduled_ts), 15
        )
        assert await membership(leave)
    finally:
        await peer.close()
    took = await wait_until("the membership ends after the disconnect", lambda: left(leave), 30)
    print(f"[delegated-leave] delay 600 s; membership gone {took:.1f} s after the disconnect")
    assert await pending(leave) is None
    await wait_until("the sent outcome is counted", lambda: _grew(stack, "sent", sent_before), 10)
    written = stack.maubot.child.log_path.read_bytes()[offset:].decode("utf-8", "replace")
    assert "ended: sent" in written and leave.delay_id not in written


async def _grew(stack: Stack, outcome: str, before: float) -> bool:
    return await metric(stack, outcome) > before


async def test_a_peer_that_never_connects_gets_its_leave_sent(
    stack: Stack, alice: MatrixUser, bot_room: str, bot_id: str, forged: Forged
) -> None:
    delay_ms = 600_000
    with auth_config(stack, bot_id, delegated_leave_connect_timeout_s=5):
        leave = await join_with_delayed_leave(alice, bot_room, delay_ms)
        t0 = time.monotonic()
        await delegate_via_sfu_get(stack, leave, delay_ms, forged)
        took = await wait_until("the leave of a peer that never came", lambda: left(leave), 30)
    print(f"[delegated-leave] never connected: membership gone after {took:.1f} s (timeout 5 s)")
    assert took >= 4.0, "sent before the connect timeout"
    assert time.monotonic() - t0 < delay_ms / 1000  # not Synapse's own timer


async def test_a_restart_of_the_plugin_keeps_the_job(
    stack: Stack, alice: MatrixUser, bot_room: str, bot_id: str, forged: Forged
) -> None:
    delay_ms = 10_000
    log = stack.maubot.child.log_path
    peer = await connect_peer(stack, alice, bot_room)
    try:
        leave = await join_with_delayed_leave(alice, bot_room, delay_ms)
        await delegate_via_sfu_get(stack, leave, delay_ms, forged)
        await wait_until(
            "the first restart", lambda: restarted_since(leave, leave.scheduled_ts), 15
        )
        offset = log.stat().st_size
        stack.maubot.api("PUT", "/instance/rtcbot", {"started": False})
        await _log_shows(log, offset, r"rtcbot stopped; ", 60)
        stopped_ms = int(time.time() * 1000)
        stack.maubot.api("PUT", "/instance/rtcbot", {"started": True})
        written = await _log_shows(log, offset, r"Delegated leaves: resumed (\d+)", 60)
        print(f"[delegated-leave] after the restart: {written}")
        assert leave.delay_id not in log.read_text()[offset:]  # a capability: never logged
        # Back, the job finds the peer and restarts Synapse's timer again...
        await wait_until(
            "a restart after the plugin's", lambda: restarted_since(leave, stopped_ms), 15
        )
        # ...and keeps it from firing for three delays more.
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3 * delay_ms / 1000:
            assert await membership(leave), "the membership ended after the plugin's restart"
            await asyncio.sleep(0.5)
    finally:
        await peer.close()
        stack.maubot.api("PUT", "/instance/rtcbot", {"enabled": True, "started": True})
    await wait_until("the membership ends after the disconnect", lambda: left(leave), 30)


async def _log_shows(log: Any, offset: int, pattern: str, timeout: float) -> str:
    m = await eventually(
        lambda: re.search(pattern + ".*", log.read_text()[offset:]),
        timeout=timeout,
        what=f"{pattern!r} in the maubot log",
        interval=0.2,
    )
    return m.group(0)


# -- the table, on SQLite and PostgreSQL ----------------------------------------------------------
def _request(delay_id: str, identity: str = "@a:hs:DEV") -> LeaveRequest:
    return LeaveRequest("lkroom", identity, delay_id, 18_000, "hs", "@a:hs", "!r:hs")


async def test_delegated_leave_rows(db: DB) -> None:  # noqa: F811 (the fixture)
    store = DelegatedLeaveStore(db.db)
    old = _request("syd_old")
    await store.save(StoredLeave(old, "waiting", 1000, 1000, ""))
    await store.save(StoredLeave(_request("syd_b", "@b:hs:DEV"), "connected", 5, 6, "PA_b"))
    new = _request("syd_new")
    await store.save(StoredLeave(new, "waiting", 2000, 2000, ""))  # replaces the row of `old`
    await store.update(old, "connected", 9999, "PA_x")  # the replaced job: no effect
    await store.delete(old)  # nor this
    await store.update(new, "connected", 2500, "PA_1")
    rows = {r.request.identity: r for r in await store.all()}
    assert set(rows) == {"@a:hs:DEV", "@b:hs:DEV"}
    mine = rows["@a:hs:DEV"]
    assert mine.request == new and (mine.phase, mine.restarted_ms, mine.sid) == (
        "connected",
        2500,
        "PA_1",
    )
    big = LeaveRequest("lk", "id", "syd_big", 7 * 86_400_000, "hs", "@a:hs", "!r:hs")
    await store.save(StoredLeave(big, "waiting", 2**41, 2**41, ""))  # ms timestamps: BIGINT
    await store.delete(new)
    assert {r.request.delay_id for r in await store.all()} == {"syd_b", "syd_big"}
