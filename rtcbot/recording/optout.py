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

from ..context import BotContext
from ..matrix.notices import NAME_LIMIT, md_escape
from ..rtc.identity import is_hashed_identity
from .store import OptOutStore

# (room, LiveKit identity) → (user, device) of a call member, or None (calls/identities.py).
Owner = Callable[[str, str], tuple[str, str] | None]
DisplayName = Callable[[str, str], Awaitable[str]]  # (room, user) → display name


class RecordingOptOuts:
    def __init__(
        self,
        ctx: BotContext,
        owner: Owner,
        display_name: DisplayName,
        store: OptOutStore | None = None,
    ) -> None:
        self.ctx = ctx
        self.owner = owner
        self.display_name = display_name
        self.log = ctx.logger("optout")
        self.store = store or OptOutStore(ctx.db.db)
        self._rooms: dict[str, dict[str, bool]] = {}  # room → user → anonymous
        # Who was left out of the running recording of a room (user → anonymous).
        self._left_out: dict[str, dict[str, bool]] = {}
        # Room → LiveKit identity → user (found once; kept while the room's recording runs).
        self._users: dict[str, dict[str, str]] = {}
        # Room → identities not matched to a member yet, left out meanwhile (review L5).
        self._unmatched: dict[str, set[str]] = {}
        # (room, user): takes their words out of the room's transcript search.
        self.forget_speaker: Callable[[str, str], Awaitable[None]] | None = None

    async def start(self) -> None:
        self._rooms = await self.store.all()

    def is_opted_out(self, room_id: str, user_id: str) -> bool:
        return user_id in self._rooms.get(room_id, {})

    async def opt_out(self, room_id: str, user_id: str, anonymous: bool) -> None:
        await self.store.opt_out(room_id, user_id, anonymous)
        self._rooms.setdefault(room_id, {})[user_id] = anonymous
        if self.forget_speaker is not None:  # their words leave the room's search too
            await self.forget_speaker(room_id, user_id)

    async def opt_in(self, room_id: str, user_id: str) -> bool:
        """True if the user had opted out."""
        had = await self.store.opt_in(room_id, user_id)
        self._rooms.get(room_id, {}).pop(user_id, None)
        return had

    # -- the recorder's side -----------------------------------------------------------------
    def withheld_for(self, room_id: str) -> Callable[[str], bool]:
        """For a new recording of the room: is this identity's audio left out now?"""
        self._left_out[room_id] = {}
        self._users[room_id], self._unmatched[room_id] = {}, set()

        def withheld(identity: str) -> bool:
            optouts = self._rooms.get(room_id)
            if not optouts:
                return False
            user = self._user(room_id, identity)
            if user is None and is_hashed_identity(identity):
                # A matrix_2_0 identity whose membership has not arrived: it may be someone
                # who opted out, so nothing of it is written until it is known.
                self._unmatched.setdefault(room_id, set()).add(identity)
                return True
            if user is None or user not in optouts:
                return False
            self._left_out.setdefault(room_id, {})[user] = optouts[user]
            return True

        return withheld

    def _user(self, room_id: str, identity: str) -> str | None:
        known = self._users.setdefault(room_id, {})
        user = known.get(identity)
        if user is None:
            found = self.owner(room_id, identity)
            if found is None:
                return None
            user = known[identity] = found[0]
        return user

    async def forgotten(self, room_id: str) -> None:
        """OwnMembership: the bot is no longer in the room."""
        self.forget_room(room_id)

    def forget_room(self, room_id: str) -> None:
        """The room's recording ended, or the bot left the room: its identities go."""
        self._users.pop(room_id, None)
        self._unmatched.pop(room_id, None)
        self._left_out.pop(room_id, None)

    async def summary_notes(self, room_id: str) -> list[str]:
        """The summary's line about who was left out of the recording that just ended."""
        left_out = self._left_out.pop(room_id, {})
        unmatched = {i for i in self._unmatched.get(room_id, ()) if not self._user(room_id, i)}
        self.forget_room(room_id)
        lines = []
        if unmatched:
            n = len(unmatched)
            lines.append(
                f"🙈 Left out: {n} participant{'s' if n != 1 else ''} I could not match to a "
                "member of this room (someone here opted out, so unknown voices are not kept)."
            )
        if not left_out:
            return lines
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
            + ".",
            *lines,
        ]
