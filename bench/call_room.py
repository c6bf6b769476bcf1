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
        key, secret = stack.secrets["livekit_api_key"], stack.secrets["livekit_api_secret"]
        login = stack.synapse.login("demo", stack.secrets["demo_password"], "DEMODEVICE")
        user = MatrixUser(stack.synapse.url, login["user_id"], login["access_token"], "DEMODEVICE")
        bot = str(stack.bot["user_id"])
        room = await user.create_room(invite=[bot])
        await user.wait_for_member(room, bot)
        # A call with a person in it first: the bot records calls, it does not start them
        # (calls.bot_may_start is off by default).
        await user.start_call(room, bot)
        for i in range(n_peers):
            peer = Peer(f"@{prefix}{i}:localhost:P{i}")
            token = mint_token(
                key, secret, livekit_room_alias(room), peer.identity, subscribe=False
            )
            await peer.connect(stack.livekit.url, token)
            peers.append(peer)
        yield CallRoom(stack, user, room, bot, peers)
    finally:
        for peer in peers:
            await peer.close()
        if user is not None:
            await user.close()
        stack.stop()
