"""The baseline for reaction latency: a bare mautrix bot that answers every call.member state
event with a notice, and nothing else. Run as a separate process by bench/reaction_latency.py.

    python -m bench.echo_bot <homeserver> <user_id> <access_token>
"""

from __future__ import annotations

import asyncio
import sys

from mautrix.client import Client
from mautrix.types import EventType, StateEvent, UserID

CALL_MEMBER = EventType.find("org.matrix.msc3401.call.member", EventType.Class.STATE)


async def main(homeserver: str, user_id: str, token: str) -> None:
    client = Client(UserID(user_id), base_url=homeserver, token=token)
    client.ignore_initial_sync = True
    client.ignore_first_sync = True

    async def on_member(evt: StateEvent) -> None:
        if evt.sender != client.mxid:
            await client.send_notice(evt.room_id, f"echo {evt.event_id}")

    async def on_invite(evt: StateEvent) -> None:
        if evt.state_key == client.mxid and getattr(evt.content, "membership", None) == "invite":
            await client.join_room(evt.room_id)

    client.add_event_handler(CALL_MEMBER, on_member)
    client.add_event_handler(EventType.ROOM_MEMBER, on_invite)
    await client.start(None)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
