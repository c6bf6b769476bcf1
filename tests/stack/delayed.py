"""The bot's pending MSC4140 delayed events, as the homeserver lists them (with the bot's token)."""

from __future__ import annotations

from typing import Any

from rtcbot_stack.http import request
from rtcbot_stack.stack import Stack

DELAYED_EVENTS = "/_matrix/client/unstable/org.matrix.msc4140/delayed_events"


def bot_delayed_events(stack: Stack, room: str) -> list[dict[str, Any]]:
    resp = request("GET", f"{stack.synapse.url}{DELAYED_EVENTS}", token=stack.bot["access_token"])
    return [d for d in resp["delayed_events"] if d["room_id"] == room]


def bot_pending_leaves(stack: Stack, room: str, key: str) -> list[str]:
    """Delay ids of the bot's pending delayed events for the state key `key` in `room`."""
    return [
        str(d["delay_id"]) for d in bot_delayed_events(stack, room) if d.get("state_key") == key
    ]
