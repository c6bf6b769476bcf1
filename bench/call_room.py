"""A stack with a room where a call is going on, for the benches that record it: the demo
user (the room's creator, so it may record) in the call, the bot in the room, and N LiveKit
peers connected to the call's LiveKit room, publish only (peers that heard each other would
keep every frame); the caller publishes what they say."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from livekit import api

from rtcbot.rtc.identity import livekit_room_alias
from rtcbot_stack import netns
from rtcbot_stack.stack import Stack, StackSettings
from tests.stack.matrix_user import MatrixUser
from tests.stack.peers import Peer, mint_token


@dataclass
class CallRoom:
    stack: Stack
    user: MatrixUser  # the demo user, in the call
    room: str
    bot: str
    peers: list[Peer]


async def join_peer(stack: Stack, room: str, identity: str) -> Peer:
    """A LiveKit peer (publishes, subscribes to nothing) in the call's SFU room."""
    key, secret = stack.secrets["livekit_api_key"], stack.secrets["livekit_api_secret"]
    peer = Peer(identity)
    token = mint_token(key, secret, livekit_room_alias(room), identity, subscribe=False)
    await peer.connect(stack.livekit.url, token)
    return peer


async def sfu_identities(stack: Stack, room: str) -> set[str]:
    """Who is in the call's SFU room, as LiveKit has it."""
    key, secret = stack.secrets["livekit_api_key"], stack.secrets["livekit_api_secret"]
    lk = api.LiveKitAPI(stack.livekit.url, key, secret)
    try:
        req = api.ListParticipantsRequest(room=livekit_room_alias(room))
        return {p.identity for p in (await lk.room.list_participants(req)).participants}
    finally:
        await lk.aclose()


@asynccontextmanager
async def call_room(
    prefix: str, n_peers: int, plugin_config: dict[str, Any] | None = None
) -> AsyncIterator[CallRoom]:
    state = Path(tempfile.mkdtemp(prefix=f"rtcbot-{prefix}-"))
    settings = StackSettings(
        state_dir=state, netns=netns.current(), demo_room=False, plugin_config=plugin_config or {}
    )
    stack = Stack(settings).start()
    peers: list[Peer] = []
    user: MatrixUser | None = None
    try:
        login = stack.synapse.login("demo", stack.secrets["demo_password"], "DEMODEVICE")
        user = MatrixUser(stack.synapse.url, login["user_id"], login["access_token"], "DEMODEVICE")
        bot = str(stack.bot["user_id"])
        room = await user.create_room(invite=[bot])
        await user.wait_for_member(room, bot)
        # A call with a person in it first: the bot records calls, it does not start them
        # (calls.bot_may_start is off by default).
        await user.start_call(room, bot)
        for i in range(n_peers):
            peers.append(await join_peer(stack, room, f"@{prefix}{i}:localhost:P{i}"))
        yield CallRoom(stack, user, room, bot, peers)
    finally:
        for peer in peers:
            await peer.close()
        if user is not None:
            await user.close()
        stack.stop()
