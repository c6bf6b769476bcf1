"""The bot's own room membership: which invites it accepts (an allowlist of users (globs) and
homeservers; by default only its own homeserver), and what happens when it is kicked, banned or leaves (the observers forget the room)."""

from __future__ import annotations

from fnmatch import fnmatchcase

from maubot.handlers import event
from mautrix.types import EventType, Membership, MemberStateEventContent, StateEvent

from ..context import BotContext
from ..matrix.functional_members import ensure_service_member
from ..tasks import Hooks

# Called with the room id once the bot is no longer in that room.


def server_of(user_id: str) -> str:
    return user_id.split(":", 1)[1] if ":" in user_id else ""


def invite_allowed(
    inviter: str,
    own_server: str,
    allowed_users: tuple[str, ...] = (),
    allowed_servers: tuple[str, ...] = (),
    from_anyone: bool = False,
) -> bool:
    """`from_anyone` accepts every invite. Otherwise the inviter must match one of the
    lists; with both empty, only users of the bot's own homeserver (`own_server`) may invite
    (anyone on a federated server could otherwise make the bot record their rooms)."""
    if from_anyone:
        return True
    if not allowed_users and not allowed_servers:
        return server_of(inviter) == own_server
    if any(fnmatchcase(inviter, pattern) for pattern in allowed_users):
        return True
    return server_of(inviter) in allowed_servers


class OwnMembership:
    def __init__(self, ctx: BotContext) -> None:
        self.ctx = ctx
        self.log = ctx.logger("invites")
        self.on_room_gone: Hooks[[str]] = Hooks(self.log, "forgetting a room")

    @event.on(EventType.ROOM_MEMBER)
    async def on_member(self, evt: StateEvent) -> None:
        content = evt.content
        if evt.state_key != self.ctx.client.mxid or not isinstance(
            content, MemberStateEventContent
        ):
            return
        if content.membership == Membership.INVITE:
            await self._invited(evt)
        elif content.membership in (Membership.LEAVE, Membership.BAN):
            how = "banned" if content.membership == Membership.BAN else "no longer in"
            self.log.info("%s %s (by %s): forgetting the room", how, evt.room_id, evt.sender)
            await self.on_room_gone.emit(str(evt.room_id))

    @event.on(EventType.ROOM_POWER_LEVELS)
    async def on_levels(self, evt: StateEvent) -> None:
        # The bot may just have been given the level to list itself.
        if evt.sender != self.ctx.client.mxid:
            await self._functional(str(evt.room_id))

    async def _functional(self, room_id: str) -> None:
        """List the bot among the room's service members where it may (MSC4171)."""
        try:
            outcome = await ensure_service_member(self.ctx.client, room_id)
        except Exception as e:  # a room the bot cannot read: diag says what it can
            self.log.info("functional members of %s not checked: %s", room_id, type(e).__name__)
            return
        if outcome == "added":
            self.log.info("listed myself in %s's functional members", room_id)

    async def _invited(self, evt: StateEvent) -> None:
        inv = self.ctx.settings().invites
        own = server_of(self.ctx.user_id)
        if invite_allowed(
            evt.sender, own, inv.allowed_users, inv.allowed_servers, inv.from_anyone
        ):
            self.log.info("accepting invite to %s from %s", evt.room_id, evt.sender)
            await self.ctx.client.join_room(evt.room_id)
            await self._functional(str(evt.room_id))
        else:
            self.log.info("declining invite to %s from %s (not allowed)", evt.room_id, evt.sender)
            await self.ctx.client.leave_room(
                evt.room_id, reason="rtcbot only accepts invites from allowed users and servers"
            )
