"""A real Matrix user for tests: creates rooms, invites the bot, sends commands, waits for replies."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from mautrix.api import HTTPAPI, Method, Path
from mautrix.client import ClientAPI
from mautrix.types import UserID

from tests.stack.eventually import eventually

Event = dict[str, Any]
CALL_MEMBER = "org.matrix.msc3401.call.member"


class MatrixUser:
    def __init__(self, base_url: str, user_id: str, access_token: str, device_id: str) -> None:
        self.user_id = user_id
        self.device_id = device_id
        self.access_token = access_token
        self.api = HTTPAPI(base_url=base_url, token=access_token)
        self.client = ClientAPI(UserID(user_id), api=self.api)

    async def close(self) -> None:
        await self.api.session.close()

    async def request(
        self, method: Method, path: Any, content: Any = None, query: dict[str, Any] | None = None
    ) -> Any:
        return await self.api.request(method, path, content, query_params=query)

    # -- rooms -------------------------------------------------------------------------------
    async def create_room(
        self,
        invite: list[str] | None = None,
        call_member_level: int | None = 0,
        name: str = "rtcbot test",
        extra: dict[str, Any] | None = None,
    ) -> str:
        body: dict[str, Any] = {"name": name, "preset": "private_chat", "invite": invite or []}
        if call_member_level is not None:
            body["power_level_content_override"] = {
                "events": {CALL_MEMBER: call_member_level, "m.rtc.member": call_member_level}
            }
        body.update(extra or {})
        resp = await self.request(Method.POST, Path.v3.createRoom, body)
        return str(resp["room_id"])

    async def join(self, room_id: str) -> None:
        await self.request(Method.POST, Path.v3.rooms[room_id].join, {})

    async def invite(self, room_id: str, user_id: str) -> None:
        await self.request(Method.POST, Path.v3.rooms[room_id].invite, {"user_id": user_id})

    async def leave(self, room_id: str) -> None:
        await self.request(Method.POST, Path.v3.rooms[room_id].leave, {})

    async def kick(self, room_id: str, user_id: str, reason: str = "") -> None:
        await self.request(
            Method.POST, Path.v3.rooms[room_id].kick, {"user_id": user_id, "reason": reason}
        )

    async def set_displayname(self, name: str) -> None:
        await self.request(
            Method.PUT, Path.v3.profile[self.user_id].displayname, {"displayname": name}
        )

    async def joined_members(self, room_id: str) -> set[str]:
        resp = await self.request(Method.GET, Path.v3.rooms[room_id].joined_members)
        return set(resp.get("joined", {}))

    async def wait_for_member(self, room_id: str, user_id: str, timeout: float = 20) -> None:
        async def joined() -> bool:
            return user_id in await self.joined_members(room_id)

        what = f"{user_id} joining {room_id}"
        await eventually(joined, timeout=timeout, what=what, interval=0.1, failure=TimeoutError)

    # -- messages ----------------------------------------------------------------------------
    async def send_text(self, room_id: str, body: str) -> str:
        content = {"msgtype": "m.text", "body": body}
        path = Path.v3.rooms[room_id].send["m.room.message"][uuid.uuid4().hex]
        resp = await self.request(Method.PUT, path, content)
        return str(resp["event_id"])

    async def put_state(
        self,
        room_id: str,
        event_type: str,
        state_key: str,
        content: Any,
        query: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        path = Path.v3.rooms[room_id].state[event_type][state_key]
        return dict(await self.request(Method.PUT, path, content, query))

    async def get_state(self, room_id: str) -> list[Event]:
        return list(await self.request(Method.GET, Path.v3.rooms[room_id].state))

    async def get_state_event(self, room_id: str, event_type: str, state_key: str = "") -> Any:
        path = Path.v3.rooms[room_id].state[event_type][state_key]
        return await self.request(Method.GET, path)

    async def request_event(self, room_id: str, event_id: str) -> Event:
        return dict(await self.request(Method.GET, Path.v3.rooms[room_id].event[event_id]))

    async def get_state_event_full(
        self, room_id: str, event_type: str, state_key: str = ""
    ) -> Event:
        """The whole state event (with event_id and origin_server_ts), not just its content."""
        path = Path.v3.rooms[room_id].state[event_type][state_key]
        return dict(await self.request(Method.GET, path, query={"format": "event"}))

    async def messages(self, room_id: str, limit: int = 50) -> list[Event]:
        """The newest `limit` timeline events, oldest first."""
        resp = await self.request(
            Method.GET, Path.v3.rooms[room_id].messages, query={"dir": "b", "limit": str(limit)}
        )
        return list(reversed(resp.get("chunk", [])))

    async def wait_for(
        self,
        room_id: str,
        predicate: Callable[[Event], bool],
        timeout: float = 20,
        after: str | None = None,
        limit: int = 100,
    ) -> Event:
        """First timeline event (after event id `after`, if given) that matches `predicate`."""
        seen: list[Event] = []

        async def match() -> Event | None:
            events = await self.messages(room_id, limit)
            if after is not None:
                ids = [e.get("event_id") for e in events]
                events = events[ids.index(after) + 1 :] if after in ids else events
            seen[:] = events
            return next((evt for evt in events if predicate(evt)), None)

        try:
            return await eventually(
                match, timeout=timeout, what="a matching event", interval=0.1, failure=TimeoutError
            )
        except TimeoutError:
            bodies = [(e.get("sender"), e.get("content", {}).get("body")) for e in seen[-10:]]
            raise TimeoutError(
                f"no matching event in {room_id} within {timeout} s: {bodies}"
            ) from None

    async def wait_for_notices(
        self, room_id: str, sender: str, count: int, after: str | None = None, timeout: float = 20
    ) -> list[Event]:
        found: list[Event] = []

        async def enough() -> list[Event] | None:
            events = await self.messages(room_id, 100)
            if after is not None:
                ids = [e.get("event_id") for e in events]
                events = events[ids.index(after) + 1 :] if after in ids else events
            found[:] = [e for e in events if is_message_from(e, sender)]
            return list(found) if len(found) >= count else None

        try:
            return await eventually(enough, timeout=timeout, what="the notices", interval=0.1)
        except AssertionError:
            return list(found)  # fewer than asked for: the caller says what it expected

    async def start_call(self, room_id: str, bot_id: str | None, intent: str = "audio") -> str:
        """Join the room's call as Element Call does (a call.member state event for this
        device). With `bot_id`, wait for the bot's "started a call" notice, so that a command
        sent next is not answered after that notice. Returns the state key."""
        key = f"_{self.user_id}_{self.device_id}_m.call"
        sent = await self.put_state(room_id, CALL_MEMBER, key, call_member_content(self, intent))
        if bot_id is not None:
            await self.wait_for(
                room_id,
                lambda e: is_message_from(e, bot_id) and "started a" in body(e),
                20,
                after=str(sent["event_id"]),
            )
        return key

    async def leave_call(self, room_id: str) -> None:
        key = f"_{self.user_id}_{self.device_id}_m.call"
        await self.put_state(room_id, CALL_MEMBER, key, {})

    async def command(self, room_id: str, text: str, bot_id: str, timeout: float = 20) -> Event:
        """Send `text` and return the bot's first message after it."""
        sent = await self.send_text(room_id, text)
        return await self.wait_for(room_id, lambda e: is_message_from(e, bot_id), timeout, sent)


def call_member_content(user: MatrixUser, intent: str = "audio") -> dict[str, Any]:
    """A call membership as Element Call (compatibility mode) writes it, for `user`'s device."""
    return {
        "application": "m.call",
        "call_id": "",
        "scope": "m.room",
        "device_id": user.device_id,
        "membershipID": f"{user.user_id}:{user.device_id}",
        "expires": 14_400_000,
        "m.call.intent": intent,
        "focus_active": {"type": "livekit", "focus_selection": "multi_sfu"},
        "foci_preferred": [],
    }


def is_message_from(evt: Event, sender: str) -> bool:
    return (
        evt.get("sender") == sender
        and evt.get("type") == "m.room.message"
        and "m.new_content" not in evt.get("content", {})
    )


def is_reply_to(sender: str, event_id: str) -> Callable[[Event], bool]:
    """A predicate: `sender`'s reply to the event `event_id` (answers sent in a burst)."""

    def match(evt: Event) -> bool:
        rel = evt.get("content", {}).get("m.relates_to") or {}
        return (
            evt.get("sender") == sender
            and rel.get("m.in_reply_to", {}).get("event_id") == event_id
        )

    return match


def body(evt: Event) -> str:
    return str(evt.get("content", {}).get("body", ""))


async def files_after(
    user: MatrixUser, room_id: str, sender: str, after: str, count: int, timeout: float = 30
) -> dict[str, Event]:
    """The m.audio messages `sender` posted after event `after`, by body, once there are
    `count` of them (a recording's files arrive one by one after its summary)."""
    files: dict[str, Event] = {}

    async def posted() -> dict[str, Event] | None:
        events = await user.messages(room_id, 60)
        ids = [e.get("event_id") for e in events]
        files.clear()
        files.update(
            (body(e), e)
            for e in events[ids.index(after) + 1 if after in ids else 0 :]
            if e.get("sender") == sender and e.get("content", {}).get("msgtype") == "m.audio"
        )
        return dict(files) if len(files) >= count else None

    try:
        return await eventually(posted, timeout=timeout, what=f"{count} files", interval=0.5)
    except AssertionError:
        raise AssertionError(f"{sender} posted only {sorted(files)}") from None
