"""The call card at the end of a call, on the real stack (issue 13, item 4).

Two people join a call (call.member state events, as Element Call writes them) and are in its
LiveKit room as real peers with the identities of their memberships; one plays a tone at a
known moment, the other stays silent. The card's numbers are checked against what the test
did, its duration against the timestamps of the events that began and ended the call.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from rtcbot.media.timeline_image import Layout, color_of
from rtcbot.rtc.identity import livekit_room_alias, member_identity
from tests.integration.test_call_media import download
from tests.stack.matrix_user import (
    CALL_MEMBER,
    MatrixUser,
    body,
    call_member_content,
    is_message_from,
)
from tests.stack.peers import sine

pytestmark = pytest.mark.stack

Event = dict[str, Any]


def key_of(user: MatrixUser) -> str:
    return f"_{user.user_id}_{user.device_id}_m.call"


async def join(user: MatrixUser, room: str) -> int:
    """Join the call; the origin_server_ts of the membership event."""
    sent = await user.put_state(room, CALL_MEMBER, key_of(user), call_member_content(user))
    return int((await user.request_event(room, str(sent["event_id"])))["origin_server_ts"])


async def leave(user: MatrixUser, room: str) -> int:
    sent = await user.put_state(room, CALL_MEMBER, key_of(user), {})
    return int((await user.request_event(room, str(sent["event_id"])))["origin_server_ts"])


async def two_people(make_user, alice: MatrixUser, bot_id: str) -> tuple[str, MatrixUser]:  # type: ignore[no-untyped-def]
    bob = await make_user("bob")
    room = await alice.create_room(invite=[bot_id, bob.user_id])
    await bob.join(room)
    await alice.wait_for_member(room, bot_id)
    await alice.set_displayname("Alice")
    await bob.set_displayname("Bob")
    return room, bob


def from_bot(bot_id: str, starts: str) -> Any:
    return lambda e: is_message_from(e, bot_id) and body(e).startswith(starts)


def card_of(evt: Event) -> dict[str, Any]:
    return dict(evt["content"]["dev.rtcbot"]["call_card"])


async def started_notice(user: MatrixUser, room: str, bot_id: str, after: str) -> int:
    """The bot's "started a call" notice: the bot had seen the call start before it."""
    evt = await user.wait_for(room, from_bot(bot_id, "📞"), 20, after=after)
    return int(evt["origin_server_ts"])


def check_duration(
    card: dict[str, Any], joined_ts: int, seen_ts: int, left_ts: int, card_ts: int
) -> None:
    """The bot stamps the start when it handles the first join (after the join's timestamp,
    before its own "started" notice) and the end when it handles the last leave (after that
    leave, before the card): the duration lies between those bounds. Same machine clock."""
    slack = 50  # ms: the server and the bot round differently
    assert joined_ts - slack <= card["started_ms"] <= seen_ts + slack, (card, joined_ts, seen_ts)
    assert left_ts - slack <= card["ended_ms"] <= card_ts + slack, (card, left_ts, card_ts)
    low, high = left_ts - seen_ts - slack, card_ts - joined_ts + slack
    assert low <= card["duration_ms"] <= high, (card["duration_ms"], low, high)


def save_sample(name: str, data: bytes) -> None:
    """`CALL_CARD_SAMPLE_DIR=docs/img make test …` keeps what the test got, for the docs."""
    where = os.environ.get("CALL_CARD_SAMPLE_DIR")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        (Path(where) / name).write_bytes(data)


async def test_card_of_a_recorded_call(  # type: ignore[no-untyped-def]
    make_user, alice: MatrixUser, bot_id: str, make_peer
) -> None:
    room, bob = await two_people(make_user, alice, bot_id)
    lk_room = livekit_room_alias(room)
    marker = await alice.send_text(room, "card: a recorded call")
    joined_ts = await join(alice, room)
    seen_ts = await started_notice(alice, room, bot_id, marker)
    quiet = np.zeros(4_800, dtype=np.int16)
    pa = await make_peer(lk_room, member_identity(alice.user_id, alice.device_id))
    pb = await make_peer(lk_room, member_identity(bob.user_id, bob.device_id))
    await pa.publish_samples(quiet)
    await pb.publish_samples(quiet)  # bob's microphone is on; he says nothing
    reply = await alice.command(room, "!call record start", bot_id, timeout=30)
    assert body(reply).startswith("🔴 Recording started"), body(reply)

    await join(bob, room)
    pa.play(sine(440, 4.0))
    await pa.played.wait()  # the tone's last frame is sent
    await leave(bob, room)
    await join(bob, room)  # bob comes back
    await leave(alice, room)
    left_ts = await leave(bob, room)

    evt = await alice.wait_for(room, from_bot(bot_id, "Call ended after"), 60, after=marker)
    text, card = body(evt), card_of(evt)
    print(f"[card] {text}\n[card] {card}")
    check_duration(card, joined_ts, seen_ts, left_ts, int(evt["origin_server_ts"]))
    assert text.splitlines()[0].endswith("· 2 people"), text
    assert card["people"] == 2 and card["peak"] == 2
    rows = {r["user_id"]: r for r in card["rows"]}
    assert [r["user_id"] for r in card["rows"]] == [alice.user_id, bob.user_id]  # join order
    assert len(rows[alice.user_id]["stints"]) == 1 and len(rows[bob.user_id]["stints"]) == 2
    assert "**Alice**" in evt["content"]["formatted_body"] or "Alice" in text
    assert "(joined 2 times)" in text
    # Talk time from the recording: 4 s of tone for alice (merging pauses under 0.5 s and
    # the 100 ms frames round it up a little), nothing for bob. (The recording's participant
    # subscribes, so LiveKit's active speakers cover the moments before its first frames.)
    assert card["talk_source"].startswith("recording"), card
    alice_talk, bob_talk = rows[alice.user_id]["talk_ms"], rows[bob.user_id]["talk_ms"]
    assert 2_000 <= alice_talk <= 5_500 and bob_talk == 0, (alice_talk, bob_talk)
    assert "Talk time from the recording" in text

    # The picture replies to the card: a PNG with a row per person, alice's bar where she spoke.
    image = await alice.wait_for(
        room,
        lambda e: (
            is_message_from(e, bot_id)
            and e["content"].get("msgtype") == "m.image"
            and e["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
            == evt["event_id"]
        ),
        30,
        after=marker,
    )
    info = image["content"]["info"]
    data = await download(alice, image["content"]["url"])
    assert info["mimetype"] == "image/png" and info["size"] == len(data)
    picture = Image.open(io.BytesIO(data))
    assert picture.format == "PNG" and picture.size == (info["w"], info["h"])
    layout = Layout(2, card["duration_ms"] / 1000)
    assert picture.size == (layout.width, layout.height)  # two rows
    s, e = max(rows[alice.user_id]["talk"], key=lambda t: t[1] - t[0])
    x = layout.x_at(((s + e) / 2 - card["started_ms"]) / 1000)
    px = picture.convert("RGB").load()
    assert px is not None
    assert px[x, layout.row_y(0)] == color_of(0)
    assert px[x, layout.row_y(1)] != color_of(1)
    save_sample("call_card.png", data)
    save_sample("call_card.txt", text.encode())


async def test_card_while_announcing_and_notify_off(  # type: ignore[no-untyped-def]
    make_user, alice: MatrixUser, bot_id: str, make_peer
) -> None:
    room, bob = await two_people(make_user, alice, bot_id)
    lk_room = livekit_room_alias(room)
    marker = await alice.send_text(room, "card: the bot only announces")
    joined_ts = await join(alice, room)
    seen_ts = await started_notice(alice, room, bot_id, marker)
    pa = await make_peer(lk_room, member_identity(alice.user_id, alice.device_id))
    await pa.publish_samples(np.zeros(4_800, dtype=np.int16))
    reply = await alice.command(room, "!call announce hi", bot_id, timeout=30)
    assert "hi" in body(reply), body(reply)  # the bot is in the call's SFU now
    await join(bob, room)
    pa.play(sine(440, 3.0))
    await pa.played.wait()
    await leave(alice, room)
    left_ts = await leave(bob, room)

    evt = await alice.wait_for(room, from_bot(bot_id, "Call ended after"), 60, after=marker)
    text, card = body(evt), card_of(evt)
    print(f"[card] {text}\n[card] {card}")
    check_duration(card, joined_ts, seen_ts, left_ts, int(evt["origin_server_ts"]))
    assert card["people"] == 2 and card["peak"] == 2
    assert [r["user_id"] for r in card["rows"]] == [alice.user_id, bob.user_id]
    # An announcer may not subscribe, and LiveKit tells who speaks only to subscribers:
    # talk time is unknown, never a false 0.
    assert card["talk_source"] is None
    assert all(r["talk_ms"] is None for r in card["rows"]), card
    assert "Talk time unknown: I was in the call's media only to speak" in text, text
    save_sample("call_card_announcer.txt", text.encode())

    # `!call notify off`: the end of a call is not posted, so no card either.
    reply = await alice.command(room, "!call notify off", bot_id)
    assert "off" in body(reply)
    quiet = await alice.send_text(room, "card: a call nobody hears about")
    await join(bob, room)
    await leave(bob, room)
    reply = await alice.command(room, "!call notify summary", bot_id)
    back = str(reply["event_id"])
    # A later call's card proves the bot handled the quiet call's end (it handles a room's
    # call events in order) without a card.
    await join(bob, room)
    await started_notice(alice, room, bot_id, back)
    await leave(bob, room)
    await alice.wait_for(room, from_bot(bot_id, "Call ended after"), 60, after=back)
    said = await alice.messages(room, 100)
    ids = [e.get("event_id") for e in said]
    between = said[ids.index(quiet) + 1 : ids.index(back)]
    assert not [body(e) for e in between if is_message_from(e, bot_id)]
    after_marker = said[ids.index(marker) + 1 :]
    assert not [e for e in after_marker if e["content"].get("msgtype") == "m.image"]
