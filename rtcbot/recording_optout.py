"""Per-person opt-out: `!call record optout [anonymous]` / `optin`, per user and room.

An opted-out person's audio is left out of everything a recording makes: their own file, the
mix, the transcript and the live captions (all of them are fed by the frames the recorder
writes, and the recorder asks `withheld_for(room)` about every 100 ms frame, so an opt-out in
the middle of a recording applies at once). The summary says that somebody was left out:
by name, or only as a count if they asked to stay anonymous.

The opt-outs of every room are kept in memory (a small table, loaded at start): the recorder's
per-frame question must not wait for the database.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .context import BotContext
from .matrix.notices import NAME_LIMIT, md_escape

# (room, LiveKit identity) → (user, device) of a call member, or None (MediaRoles.owner).
Owner = Callable[[str, str], tuple[str, str] | None]
DisplayName = Callable[[str, str], Awaitable[str]]  # (room, user) → display name


class RecordingOptOuts:
    def __init__(self, ctx: BotContext, owner: Owner, display_name: DisplayName) -> None:
        self.ctx = ctx
        self.owner = owner
        self.display_name = display_name
        self.log = ctx.logger("optout")
        self._rooms: dict[str, dict[str, bool]] = {}  # room → user → anonymous
        # Who was left out of the running recording of a room (user → anonymous).
        self._left_out: dict[str, dict[str, bool]] = {}
        self._users: dict[str, str] = {}  # LiveKit identity → user (found once, kept)

    async def start(self) -> None:
        self._rooms = await self.ctx.db.optouts.all()

    def is_opted_out(self, room_id: str, user_id: str) -> bool:
        return user_id in self._rooms.get(room_id, {})

    async def opt_out(self, room_id: str, user_id: str, anonymous: bool) -> None:
        await self.ctx.db.optouts.opt_out(room_id, user_id, anonymous)
        self._rooms.setdefault(room_id, {})[user_id] = anonymous

    async def opt_in(self, room_id: str, user_id: str) -> bool:
        """True if the user had opted out."""
        had = await self.ctx.db.optouts.opt_in(room_id, user_id)
        self._rooms.get(room_id, {}).pop(user_id, None)
        return had

    # -- the recorder's side -----------------------------------------------------------------
    def withheld_for(self, room_id: str) -> Callable[[str], bool]:
        """For a new recording of the room: is this identity's audio left out now?"""
        self._left_out[room_id] = {}

        def withheld(identity: str) -> bool:
            optouts = self._rooms.get(room_id)
            if not optouts:
                return False
            user = self._user(room_id, identity)
            if user is None or user not in optouts:
                return False
            self._left_out.setdefault(room_id, {})[user] = optouts[user]
            return True

        return withheld

    def _user(self, room_id: str, identity: str) -> str | None:
        user = self._users.get(identity)
        if user is None:
            found = self.owner(room_id, identity)
            if found is None:
                return None
            user = self._users[identity] = found[0]
        return user

    async def summary_notes(self, room_id: str) -> list[str]:
        """The summary's line about who was left out of the recording that just ended."""
        left_out = self._left_out.pop(room_id, {})
        if not left_out:
            return []
        named = [u for u, anonymous in left_out.items() if not anonymous]
        hidden = len(left_out) - len(named)
        parts = [md_escape(await self.display_name(room_id, u), NAME_LIMIT) for u in named]
        if hidden:
            parts.append(
                "1 person who asked not to be named"
                if hidden == 1
                else f"{hidden} people who asked not to be named"
            )
        return [
            "🙈 Left out of the files, the mix and the transcript at their request: "
            + ", ".join(parts)
            + "."
        ]
