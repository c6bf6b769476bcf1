"""Operating rtcbot: config through maubot's management API, /health, /status, /metrics."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rtcbot_stack.http import HttpError
from rtcbot_stack.stack import Stack
from tests.stack.eventually import eventually
from tests.stack.matrix_user import CALL_MEMBER, MatrixUser, body, call_member_content

pytestmark = pytest.mark.stack


async def get(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers) as resp:
        return resp.status, await resp.text()


def put_config(stack: Stack, bot_id: str, cfg: dict[str, Any]) -> None:
    stack.maubot.put_instance("rtcbot", "dev.rtcbot", bot_id, json.dumps(cfg))


async def test_metrics_parse_and_count_calls(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str
) -> None:
    marker = await alice.send_text(bot_room, "metrics")
    key = f"_{alice.user_id}_{alice.device_id}_m.call"
    await alice.put_state(bot_room, CALL_MEMBER, key, call_member_content(alice, "video"))
    await alice.wait_for(bot_room, lambda e: body(e).startswith("📞"), after=marker)

    status, text = await get(f"{stack.auth_service_url}/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "rtcbot_calls_active",
        "rtcbot_call_members",
        "rtcbot_announcements",
        "rtcbot_heartbeat_failures",
        "rtcbot_reaction_latency_seconds",
    ):
        assert name in families, sorted(families)
    assert families["rtcbot_calls_active"].samples[0].value >= 1
    latency_count = [
        s for s in families["rtcbot_reaction_latency_seconds"].samples if s.name.endswith("_count")
    ]
    assert latency_count and latency_count[0].value >= 1
    await alice.put_state(bot_room, CALL_MEMBER, key, {})


async def test_status_needs_the_bearer_token(stack: Stack, bot_id: str) -> None:
    url = f"{stack.auth_service_url}/status"
    status, _ = await get(url)
    assert status == 403  # disabled until a token is configured

    cfg = stack.plugin_config()
    cfg["web"] = {"status_token": "s3cret-status-token"}
    put_config(stack, bot_id, cfg)
    try:
        assert (await get(url))[0] == 401
        assert (await get(url, "wrong"))[0] == 401
        status, text = await get(url, "s3cret-status-token")
        assert status == 200
        data = json.loads(text)
        assert data["bot"] == bot_id and isinstance(data["rooms"], list)
    finally:
        put_config(stack, bot_id, stack.plugin_config())


async def test_health(stack: Stack) -> None:
    status, text = await get(f"{stack.auth_service_url}/health")
    data = json.loads(text)
    assert status == 200, data
    assert data["homeserver"]["reachable"] and data["sfu"]["reachable"]
    assert data["e2ee"] == {"available": True}, data


async def test_live_reload_changes_behaviour_without_dropping_the_call(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str
) -> None:
    bot_key = f"_{bot_id}_{stack.bot['device_id']}_m.call"
    await alice.start_call(bot_room, bot_id)
    await alice.command(bot_room, "!call join", bot_id)
    cfg = stack.plugin_config()
    cfg["command"] = "rtc"
    put_config(stack, bot_id, cfg)
    try:
        reply = await alice.command(bot_room, "!rtc version", bot_id)
        assert body(reply).startswith("rtcbot ")
        # The call survived the reload: the membership is there and still heartbeating.
        assert await alice.get_state_event(bot_room, CALL_MEMBER, bot_key)
        reply = await alice.command(bot_room, "!rtc status", bot_id)
        assert "in the call" in body(reply), body(reply)
    finally:
        put_config(stack, bot_id, stack.plugin_config())
    await alice.command(bot_room, "!call leave", bot_id)


async def test_bad_config_is_refused_with_the_reason(stack: Stack, bot_id: str) -> None:
    log = stack.maubot.child.log_path
    cfg = stack.plugin_config()
    cfg["notices"] = {"default_level": "loud"}
    put_config(stack, bot_id, cfg)
    # A live reload keeps the last good settings, and says why.
    await eventually(
        lambda: "notices.default_level must be one of off, summary, all" in log.read_text(),
        timeout=10,
        what="a clear error in the log",
        interval=0.2,
    )
    # A (re)start with the bad config refuses to run instead of half-working.
    stack.maubot.api("PUT", "/instance/rtcbot", {"started": False})
    try:
        stack.maubot.api("PUT", "/instance/rtcbot", {"started": True})
    except HttpError:
        pass  # maubot may answer with an error for a plugin that failed to start
    info = stack.maubot.get_instance("rtcbot")
    assert info["started"] is False
    assert "Invalid rtcbot configuration: notices.default_level" in log.read_text()
    put_config(stack, bot_id, stack.plugin_config())
    stack.maubot.api("PUT", "/instance/rtcbot", {"enabled": True, "started": True})
    assert stack.maubot.get_instance("rtcbot")["started"] is True


async def test_notice_batching_window_changes_live(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str, make_user: Any
) -> None:
    """notices.batch_seconds applies on a live reload, to windows already open."""
    bob: MatrixUser = await make_user("bob")
    await alice.invite(bot_room, bob.user_id)
    await bob.join(bot_room)
    await alice.start_call(bot_room, bot_id)
    cfg = stack.plugin_config()
    cfg["notices"] = {"batch_seconds": 120}
    put_config(stack, bot_id, cfg)
    try:
        await alice.command(bot_room, "!call version", bot_id)  # the reload is in effect
        sent = await bob.start_call(bot_room, None)
        joined = f"{bob.user_id[1:].split(':')[0]} joined"

        async def notices() -> list[str]:
            events = await alice.messages(bot_room, 50)
            return [body(e) for e in events if e.get("sender") == bot_id and joined in body(e)]

        # An absence is checked over a window: with the old 2 s batch the notice came by now.
        await asyncio.sleep(6)
        assert await notices() == [], "posted before the 120 s window closed"
        cfg["notices"] = {"batch_seconds": 0}
        put_config(stack, bot_id, cfg)
        await eventually(
            notices, timeout=20, what=f"'{joined}' after the window shrank to 0", interval=0.3
        )
        assert sent  # (the state key of bob's membership)
    finally:
        put_config(stack, bot_id, stack.plugin_config())


def sample(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in (labels or {}).items()):
                return float(s.value)
    return 0.0


async def test_metrics_the_alert_rules_read(stack: Stack) -> None:
    """monitoring/alerts.yml reads these: the token endpoints by status, the recordings disk,
    the memory."""
    url = f"{stack.auth_service_url}/metrics"
    refused = {"endpoint": "sfu/get", "status": "400"}
    before = sample((await get(url))[1], "rtcbot_auth_requests_total", refused)
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{stack.auth_service_url}/sfu/get", data=b"not json") as resp:
            assert resp.status == 400
    text = (await get(url))[1]
    assert sample(text, "rtcbot_auth_requests_total", refused) == before + 1
    assert sample(text, "rtcbot_recording_disk_free_bytes") > 0
    assert sample(text, "rtcbot_recording_disk_floor_bytes") == 500 * 1024 * 1024
    # maubot's own memory, as RtcbotMemoryHigh reads it: a real process is tens of MB.
    assert 30e6 < sample(text, "rtcbot_process_resident_bytes") < 2e9
    assert sample(text, "rtcbot_own_memberships_joined") <= sample(text, "rtcbot_own_memberships")
