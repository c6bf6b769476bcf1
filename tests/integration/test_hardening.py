"""Hardening, judged by what the room shows: escaping, no call started by the bot,
the bot kicked mid-recording, and no secret in the room or the log when things fail.
(Permissions: test_permissions.py, generated from the table of commands.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rtcbot.rtc.identity import livekit_room_alias
from rtcbot_stack.stack import Stack
from tests.stack.eventually import eventually
from tests.stack.matrix_user import CALL_MEMBER, MatrixUser, body, is_message_from

pytestmark = pytest.mark.stack

EVIL = '<a href="https://ev.il">click</a> <b>bold</b> **strong** [x](https://ev.il)'  # < 80
NO_CALL = "There is no call in this room right now"
STATUS_TOKEN = "hardening-status-token"


async def plugin_status(stack: Stack) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {STATUS_TOKEN}"}
    url = f"{stack.auth_service_url}/status"
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return dict(await resp.json())


def html_of(evt: dict[str, Any]) -> str:
    return str(evt.get("content", {}).get("formatted_body", ""))


def assert_literal(evt: dict[str, Any]) -> None:
    """People's text is shown as typed: no link, no bold, no markup of theirs in the HTML."""
    formatted = html_of(evt)
    assert "<a " not in formatted and "<b>" not in formatted, formatted
    assert "<strong>strong" not in formatted and 'ev.il">' not in formatted, formatted
    assert "&lt;a href=" in formatted and "&lt;b&gt;bold&lt;/b&gt;" in formatted, formatted
    assert evt["content"].get("m.mentions") == {}, evt["content"]


async def bot_state(user: MatrixUser, room: str, key: str) -> Any:
    try:
        return await user.get_state_event(room, CALL_MEMBER, key)
    except Exception:
        return None  # never set


async def test_people_text_is_escaped_in_notices_and_replies(
    alice: MatrixUser, bot_id: str, make_peer
) -> None:  # type: ignore[no-untyped-def]
    # The name is set before the room exists, so every member event in it carries it.
    await alice.set_displayname(EVIL)
    bot_room = await alice.create_room(invite=[bot_id])
    await alice.wait_for_member(bot_room, bot_id)
    sent = await alice.put_state(
        bot_room,
        CALL_MEMBER,
        f"_{alice.user_id}_{alice.device_id}_m.call",
        {
            "application": "m.call",
            "call_id": "",
            "scope": "m.room",
            "device_id": alice.device_id,
            "expires": 14_400_000,
            "focus_active": {"type": "livekit", "focus_selection": "multi_sfu"},
            "foci_preferred": [],
        },
    )
    started = await alice.wait_for(
        bot_room,
        lambda e: is_message_from(e, bot_id) and "started a" in body(e),
        20,
        after=sent["event_id"],
    )
    assert_literal(started)
    assert EVIL in body(started)  # the plain body shows the name as typed

    await make_peer(livekit_room_alias(bot_room), "@ear:localhost:EAR", publish=False)
    reply = await alice.command(bot_room, f"!call announce {EVIL} @room", bot_id, timeout=30)
    assert "spoken in the call" in body(reply), body(reply)
    assert_literal(reply)
    who = await alice.command(bot_room, "!call who", bot_id)
    assert_literal(who)

    # A very long name is cut, and says so.
    await alice.set_displayname("N" * 200)  # Synapse allows up to 256

    async def cut_name() -> Any:  # the homeserver updates the room's member event later
        status = await alice.command(bot_room, "!call status", bot_id)
        return status if "N" * 80 in body(status) else None

    status = await eventually(
        cut_name, timeout=30, what="the long name in !call status", interval=0.5
    )
    assert "N" * 80 in body(status) and "N" * 81 not in body(status), body(status)
    assert "… (truncated)" in body(status), body(status)


async def test_the_bot_never_starts_a_call_and_leaves_an_empty_one(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str
) -> None:
    bot_key = f"_{bot_id}_{stack.bot['device_id']}_m.call"
    for text in ("!call join", "!call record start", "!call announce hello"):
        answer = body(await alice.command(bot_room, text, bot_id, timeout=30))
        assert answer.startswith(NO_CALL) and "auto record" in answer, (text, answer)
    assert not await bot_state(alice, bot_room, bot_key)  # no membership was ever published
    texts = [body(e) for e in await alice.messages(bot_room, 50)]
    assert not any("Recording started" in t or "spoken in the call" in t for t in texts), texts

    await alice.start_call(bot_room, bot_id)
    reply = await alice.command(bot_room, "!call join", bot_id)
    assert body(reply).startswith("Joined"), body(reply)
    assert await bot_state(alice, bot_room, bot_key)
    # The last person leaves: the bot leaves too (its delayed leave would otherwise be renewed
    # for as long as it runs).
    await alice.leave_call(bot_room)

    async def bot_gone() -> bool:
        return not await bot_state(alice, bot_room, bot_key)

    await eventually(bot_gone, timeout=20, what="the bot leaving the empty call", interval=0.2)
    status = await alice.command(bot_room, "!call status", bot_id)
    assert "**The bot**: not in the call" in body(status) or "The bot: not in the call" in body(
        status
    ), body(status)


async def test_kicked_during_a_recording_the_bot_stops_and_keeps_the_files(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str, make_peer
) -> None:  # type: ignore[no-untyped-def]
    log = stack.maubot.child.log_path
    offset = len(log.read_text())
    cfg = stack.plugin_config()
    cfg["web"] = {"status_token": STATUS_TOKEN}
    stack.maubot.put_instance("rtcbot", "dev.rtcbot", bot_id, json.dumps(cfg))
    try:
        peer = await make_peer(livekit_room_alias(bot_room), "@tone-k:localhost:KICK")
        await peer.publish_tone(440)
        await alice.start_call(bot_room, bot_id)
        reply = await alice.command(bot_room, "!call record start", bot_id, timeout=30)
        assert body(reply).startswith("🔴 Recording started"), body(reply)

        # Some audio is written before the kick (the status says how much).
        async def some_audio() -> Any:
            status = await alice.command(bot_room, "!call record status", bot_id)
            return status if "0.0 MB" not in body(status) else None

        await eventually(some_audio, timeout=20, what="audio in !call record status", interval=0.5)
        assert bot_room in json.dumps(await plugin_status(stack))

        await alice.kick(bot_room, bot_id, "testing")
        pattern = re.compile(r"removed from (\S+) while recording: (\d+) files kept in (\S+)")
        m = await eventually(
            lambda: pattern.search(log.read_text()[offset:]),
            timeout=30,
            what="the bot's log line about the files it kept",
            interval=0.2,
        )
        assert m.group(1) == bot_room and int(m.group(2)) >= 2  # the speaker's file and the mix
        kept = Path(m.group(3))
        if not kept.is_absolute():
            kept = stack.maubot.data_dir / kept
        oggs = [p for p in kept.iterdir() if p.suffix == ".ogg" and p.stat().st_size > 0]
        assert len(oggs) >= 2, list(kept.iterdir())

        # The bot dropped the room: no recording, no membership publisher, no call model (the
        # log line above comes first; the managers forget the room right after it).
        async def room_forgotten() -> bool:
            return bot_room not in json.dumps(await plugin_status(stack))

        await eventually(room_forgotten, timeout=20, what="/status without the room", interval=0.2)
    finally:
        stack.maubot.put_instance(
            "rtcbot", "dev.rtcbot", bot_id, json.dumps(stack.plugin_config())
        )


async def test_no_secret_reaches_the_room_or_the_log_when_livekit_refuses(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str
) -> None:
    log = stack.maubot.child.log_path
    offset = len(log.read_text())
    cfg = stack.plugin_config()
    wrong_secret = "wrong-livekit-secret-0123456789abcdef"
    cfg["livekit"] = {**cfg["livekit"], "api_secret": wrong_secret}
    stack.maubot.put_instance("rtcbot", "dev.rtcbot", bot_id, json.dumps(cfg))
    try:
        await alice.start_call(bot_room, bot_id)
        answer = await alice.command(bot_room, "!call record start", bot_id, timeout=60)
        assert "could not join the call's media" in body(answer), body(answer)
        answer = await alice.command(bot_room, "!call announce hi", bot_id, timeout=60)
        assert "could not join the call's media" in body(answer), body(answer)
    finally:
        stack.maubot.put_instance(
            "rtcbot", "dev.rtcbot", bot_id, json.dumps(stack.plugin_config())
        )
    secrets = [
        wrong_secret,
        stack.secrets["livekit_api_secret"],
        str(stack.bot["access_token"]),
        alice.access_token,
    ]
    written = log.read_text()[offset:]
    room_text = json.dumps(await alice.messages(bot_room, 50))
    for where, text in (("log", written), ("room", room_text)):
        for secret in secrets:
            assert secret not in text, f"a secret in the {where}"
        assert not re.search(r"eyJ[\w-]+\.[\w-]+\.", text), f"a JWT in the {where}"
        assert not re.search(r"\bsyt_[\w-]{6,}", text), f"an access token in the {where}"


async def test_metrics_count_commands(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str
) -> None:
    async def commands_total() -> float:
        async with aiohttp.ClientSession() as s, s.get(f"{stack.auth_service_url}/metrics") as r:
            text = await r.text()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith('rtcbot_commands_total{command="version"}')
        )

    before = await commands_total()
    await alice.command(bot_room, "!call version", bot_id)
    assert await commands_total() == before + 1


async def test_livekit_webhooks_arrive_and_a_finished_room_ends_the_recording(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str, make_peer
) -> None:  # type: ignore[no-untyped-def]
    """The real LiveKit server's webhooks reach the bot (counted per event); a signed
    `room_finished` for the room being recorded ends the recording, with the reason."""
    import base64
    import hashlib

    from livekit import api

    async def webhooks(event: str) -> float:
        async with aiohttp.ClientSession() as s, s.get(f"{stack.auth_service_url}/metrics") as r:
            text = await r.text()
        prefix = f'rtcbot_sfu_webhooks_total{{event="{event}"}}'
        return sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(prefix))

    joined_before = await webhooks("participant_joined")
    lk_room = livekit_room_alias(bot_room)
    peer = await make_peer(lk_room, "@tone-f:localhost:FIN")
    await peer.publish_tone(440)

    async def joined_webhook() -> bool:
        return await webhooks("participant_joined") > joined_before

    await eventually(joined_webhook, timeout=30, what="a participant_joined webhook", interval=0.3)

    await alice.start_call(bot_room, bot_id)
    reply = await alice.command(bot_room, "!call record start", bot_id, timeout=30)
    assert body(reply).startswith("🔴 Recording started"), body(reply)
    # LiveKit signs its webhooks with the API key: the same request LiveKit sends when it
    # finishes a room (here while the room still exists, so only the webhook can stop it).
    event = json.dumps({"event": "room_finished", "room": {"name": lk_room}, "id": "EV_T"})
    digest = base64.b64encode(hashlib.sha256(event.encode()).digest()).decode()
    token = (
        api.AccessToken(stack.secrets["livekit_api_key"], stack.secrets["livekit_api_secret"])
        .with_sha256(digest)
        .to_jwt()
    )
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{stack.auth_service_url}/sfu_webhook",
            data=event.encode(),
            headers={"Authorization": token, "Content-Type": "application/webhook+json"},
        ) as r,
    ):
        assert r.status == 200, await r.text()
    summary = await alice.wait_for(
        bot_room, lambda e: body(e).startswith("⏹️ Recording stopped"), 30, reply["event_id"]
    )
    assert "media room was closed on the server" in body(summary), body(summary)
