"""The bot's media roles driven from the room: `!call record`, `!call announce`, `!call auto`.

Human participants are real LiveKit peers in the LiveKit room that belongs to the Matrix room
(MSC4195 alias), publishing sine tones; the bot runs inside maubot. Whatever it does in a
call, the bot is ONE LiveKit participant there, with the identity of its call membership
(`@rtcbot:localhost:RTCBOT`), so clients show it and play its voice.
"""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from livekit import api

from rtcbot.rtc.identity import livekit_room_alias, member_identity
from rtcbot_stack.stack import Stack
from tests.stack.eventually import eventually
from tests.stack.matrix_user import CALL_MEMBER, MatrixUser, body, call_member_content
from tests.stack.peers import dominant_frequency, rms

pytestmark = pytest.mark.stack


async def download(user: MatrixUser, mxc: str) -> bytes:
    server, media_id = mxc.removeprefix("mxc://").split("/", 1)
    url = user.api.base_url / "_matrix/client/v1/media/download" / server / media_id
    async with user.api.session.get(
        url, headers={"Authorization": f"Bearer {user.access_token}"}
    ) as r:
        assert r.status == 200
        return await r.read()


def is_audio(evt: dict[str, Any], bot_id: str) -> bool:
    return evt.get("sender") == bot_id and evt.get("content", {}).get("msgtype") == "m.audio"


def bot_identity(stack: Stack) -> str:
    """The bot's LiveKit identity: that of its call membership (compatibility mode)."""
    return member_identity(str(stack.bot["user_id"]), str(stack.bot["device_id"]))


async def sfu_participants(stack: Stack, bot_room: str) -> dict[str, api.ParticipantInfo]:
    """The participants of the call's LiveKit room as the SFU has them, by identity."""
    lk = api.LiveKitAPI(
        stack.livekit.url, stack.secrets["livekit_api_key"], stack.secrets["livekit_api_secret"]
    )
    try:
        resp = await lk.room.list_participants(
            api.ListParticipantsRequest(room=livekit_room_alias(bot_room))
        )
    finally:
        await lk.aclose()
    return {p.identity: p for p in resp.participants}


async def until(predicate: Any, timeout: float, what: str) -> None:
    await eventually(predicate, timeout=timeout, what=what, interval=0.2)


def voiced_seconds(samples: np.ndarray) -> float:
    return float((np.abs(samples) > 500).sum()) / 48_000


async def test_record_start_stop_posts_a_file_per_speaker_and_a_mix(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str, make_peer
) -> None:  # type: ignore[no-untyped-def]
    lk_room = livekit_room_alias(bot_room)
    a = await make_peer(lk_room, "@tone-a:localhost:DEVA")
    await a.publish_tone(440)
    # A human is in the call, so the bot does not stop at once for an empty room.
    await alice.start_call(bot_room, bot_id)
    reply = await alice.command(bot_room, "!call record start", bot_id, timeout=30)
    assert body(reply).startswith("🔴 Recording started"), body(reply)
    started = time.monotonic()
    # The bot's membership is published while it is in the SFU.
    bot_key = f"_{bot_id}_{stack.bot['device_id']}_m.call"
    assert await alice.get_state_event(bot_room, CALL_MEMBER, bot_key)
    # ONE participant of the bot, with its membership's identity, named for what it does,
    # publishing its status picture; the spoken consent notice comes from it too.
    me = bot_identity(stack)

    async def consent_heard() -> bool:
        return voiced_seconds(a.samples_from(me)) > 0.5

    await until(consent_heard, 30, "peer a to hear the consent notice from the bot")
    bots = {i: p for i, p in (await sfu_participants(stack, bot_room)).items() if bot_id in i}
    assert list(bots) == [me], list(bots)
    assert bots[me].name == "rtcbot (recording)"
    assert bots[me].permission.can_subscribe and bots[me].permission.recorder
    assert api.TrackSource.CAMERA in [t.source for t in bots[me].tracks]

    await asyncio.sleep(2)
    b = await make_peer(lk_room, "@tone-b:localhost:DEVB")
    await b.publish_tone(660)
    b_joined = time.monotonic() - started
    await asyncio.sleep(5)

    status = await alice.command(bot_room, "!call record status", bot_id)
    assert "Recording for" in body(status)
    stopped = await alice.send_text(bot_room, "!call record stop")
    summary = await alice.wait_for(
        bot_room, lambda e: body(e).startswith("⏹️ Recording stopped"), 60, after=stopped
    )
    assert "Who spoke:" in body(summary)
    length = time.monotonic() - started

    async def bot_gone() -> bool:  # its last role ended: it leaves the SFU and the call
        return me not in await sfu_participants(stack, bot_room)

    await until(bot_gone, 30, "the bot to leave the LiveKit room")
    assert not await alice.get_state_event(bot_room, CALL_MEMBER, bot_key)

    async def three_files() -> list[dict[str, Any]] | None:
        audio = [e for e in await alice.messages(bot_room, 50) if is_audio(e, bot_id)]
        return audio if len(audio) >= 3 else None

    audio = await eventually(three_files, timeout=30, what="the recording's 3 files", interval=0.5)
    assert len(audio) == 3, [body(e) for e in audio]  # tone-a, tone-b, mix
    files: dict[str, tuple[np.ndarray, int]] = {}
    for evt in audio:
        data = await download(alice, evt["content"]["url"])
        samples, rate = sf.read(io.BytesIO(data), dtype="int16")
        assert evt["content"]["info"]["duration"] == pytest.approx(
            len(samples) / rate * 1000, rel=0.05
        )
        files[body(evt)] = (samples, rate)

    a_key = next(k for k in files if "tone-a" in k)
    b_key = next(k for k in files if "tone-b" in k)
    mix_key = next(k for k in files if k.startswith("Mix"))
    sa, rate = files[a_key]
    sb, _ = files[b_key]
    assert abs(dominant_frequency(sa[-rate:], rate) - 440) < 10
    assert abs(dominant_frequency(sb[-rate:], rate) - 660) < 10
    # Time-aligned: the late joiner's file starts with silence of about the join delay.
    # (Precise alignment, to 0.1 s of what other members hear, is tested in test_media.py; here
    # the reference is the command reply, which comes after the recorder started, and excludes
    # the subscription set-up, so only a bound is honest.)
    first_sound = int(np.argmax(np.abs(sb) > 2000)) / rate
    # The lower bound is the alignment (silence until the join); above it, only the SFU's
    # subscription set-up, which a loaded 2-core machine stretches to seconds: bounded by the
    # 5 s the peer was in the call, not by luck.
    assert b_joined - 0.2 <= first_sound <= b_joined + 4.0, (first_sound, b_joined)
    assert rms(sb[: int(rate * max(0.1, b_joined - 0.6))]) < 300
    for samples, _ in files.values():
        assert len(samples) / rate == pytest.approx(length, rel=0.15)
    mix, _ = files[mix_key]
    spectrum = np.abs(np.fft.rfft(mix[-rate:].astype(float)))
    freqs = np.fft.rfftfreq(rate, 1 / rate)
    for tone in (440, 660):
        assert spectrum[np.abs(freqs - tone) < 5].max() > spectrum.mean() * 20


async def test_unprivileged_user_cannot_record(
    make_user, bot_room: str, alice: MatrixUser, bot_id: str
) -> None:  # type: ignore[no-untyped-def]
    mallory = await make_user("mallory")
    await alice.invite(bot_room, mallory.user_id)
    await mallory.join(bot_room)
    reply = await mallory.command(bot_room, "!call record start", bot_id)
    assert "only members with power level 50" in body(reply) and "you have 0" in body(reply)


async def test_announce_is_heard_in_the_call(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str, make_peer
) -> None:  # type: ignore[no-untyped-def]
    listener = await make_peer(
        livekit_room_alias(bot_room), "@listener:localhost:L", publish=False
    )
    await alice.start_call(bot_room, bot_id)
    reply = await alice.command(bot_room, "!call announce hello everyone", bot_id, timeout=30)
    assert "hello everyone" in body(reply), body(reply)
    spoken = float(body(reply).rsplit("call, ", 1)[1].split(" s")[0])
    await asyncio.sleep(1)
    # The voice comes from the bot's membership identity (what clients play), nothing else.
    me = bot_identity(stack)
    assert list(listener.heard) == [me], list(listener.heard)
    samples = listener.samples_from(me)
    loud = np.abs(samples) > 500
    voiced_s = loud.sum() / 48_000
    assert voiced_s > 0.2 * spoken and len(samples) / 48_000 >= spoken * 0.8
    # Announcing put the bot into the call (its membership), as an announcer only.
    bot_key = f"_{bot_id}_{stack.bot['device_id']}_m.call"
    assert await alice.get_state_event(bot_room, CALL_MEMBER, bot_key)
    info = (await sfu_participants(stack, bot_room))[me]
    assert info.name == "rtcbot (announcer)"
    assert not info.permission.can_subscribe and not info.permission.recorder
    assert list(info.permission.can_publish_sources) == [
        api.TrackSource.CAMERA,
        api.TrackSource.MICROPHONE,
    ]


async def test_auto_record_follows_the_call(
    bot_room: str, alice: MatrixUser, bot_id: str, make_peer
) -> None:  # type: ignore[no-untyped-def]
    reply = await alice.command(bot_room, "!call auto record", bot_id)
    assert "Auto-follow set to record" in body(reply)
    peer = await make_peer(livekit_room_alias(bot_room), f"{alice.user_id}:{alice.device_id}")
    await peer.publish_tone(520)
    marker = await alice.send_text(bot_room, "joining")
    key = f"_{alice.user_id}_{alice.device_id}_m.call"
    await alice.put_state(bot_room, CALL_MEMBER, key, call_member_content(alice, "audio"))
    await alice.wait_for(bot_room, lambda e: "auto-record is on" in body(e), 30, after=marker)
    await asyncio.sleep(3)
    await alice.put_state(bot_room, CALL_MEMBER, key, {})
    await alice.wait_for(
        bot_room, lambda e: body(e).startswith("⏹️ Recording stopped"), 60, after=marker
    )
    await alice.command(bot_room, "!call auto off", bot_id)


@pytest.mark.slow
async def test_sfu_killed_during_recording_room_is_told_and_recording_resumes(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str, make_peer
) -> None:  # type: ignore[no-untyped-def]
    lk_room = livekit_room_alias(bot_room)
    peer = await make_peer(lk_room, "@tone-k:localhost:DEVK")
    await peer.publish_tone(440)
    await alice.start_call(bot_room, bot_id)
    reply = await alice.command(bot_room, "!call record start", bot_id, timeout=30)
    assert body(reply).startswith("🔴 Recording started"), body(reply)
    await asyncio.sleep(3)

    stack.livekit.child.kill()  # the SFU dies (SIGKILL)
    lost = await alice.wait_for(
        bot_room,
        lambda e: "lost the connection to the call's media server" in body(e),
        90,
        after=reply["event_id"],
    )
    stack.livekit.start()
    # The SDK peer of the "human" reconnects by itself or we make a new one publishing again.
    await peer.close()
    peer2 = await make_peer(lk_room, "@tone-k:localhost:DEVK")
    await peer2.publish_tone(440)
    await alice.wait_for(
        bot_room,
        lambda e: "recording continues in a new part" in body(e),
        120,
        after=lost["event_id"],
    )
    await asyncio.sleep(3)
    stopped = await alice.send_text(bot_room, "!call record stop")
    summary = await alice.wait_for(
        bot_room, lambda e: body(e).startswith("⏹️ Recording stopped"), 60, after=stopped
    )
    assert "in 2 parts" in body(summary), body(summary)

    async def both_parts() -> list[dict[str, Any]] | None:
        audio = [
            e
            for e in await alice.messages(bot_room, 50)
            if is_audio(e, bot_id) and "tone-k" in body(e)
        ]
        return audio if len(audio) >= 2 else None

    audio = await eventually(both_parts, timeout=30, what="both parts' files", interval=0.5)
    names = sorted(body(e) for e in audio)
    assert len(names) == 2 and any("part2" in n for n in names), names
    for evt in audio:  # both parts are playable and hold the tone
        samples, rate = sf.read(
            io.BytesIO(await download(alice, evt["content"]["url"])), dtype="int16"
        )
        loud = samples[np.abs(samples) > 2000]
        assert len(loud) > rate // 2


async def test_announce_with_a_token_from_the_authorization_service(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str, make_peer
) -> None:  # type: ignore[no-untyped-def]
    """No local LiveKit secret: the bot discovers the service from Synapse's transports
    endpoint, gets an OpenID token, and asks the (plugin's own) service for its JWT."""
    import json

    cfg = stack.plugin_config()
    cfg["livekit"] = {"url": "", "api_key": "", "api_secret": "", "service_url": ""}
    stack.maubot.put_instance("rtcbot", "dev.rtcbot", bot_id, json.dumps(cfg))
    try:
        listener = await make_peer(livekit_room_alias(bot_room), "@ear:localhost:E", publish=False)
        await alice.start_call(bot_room, bot_id)
        reply = await alice.command(bot_room, "!call announce via the service", bot_id, timeout=30)
        assert "via the service" in body(reply) and "spoken in the call" in body(reply), body(
            reply
        )
        await asyncio.sleep(1)
        # The bot asked /sfu/get, for the identity of its (state-event) call membership.
        assert list(listener.heard) == [bot_identity(stack)], list(listener.heard)
        samples = next(iter(listener.heard.values()))
        assert (np.abs(np.concatenate(samples)) > 500).sum() > 48_000 * 0.2
    finally:
        stack.maubot.put_instance(
            "rtcbot", "dev.rtcbot", bot_id, json.dumps(stack.plugin_config())
        )
