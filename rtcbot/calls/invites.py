"""The bot's own room membership: which invites it accepts (an allowlist of users (globs) and
homeservers; by default only its own homeserver), and what happens when it is kicked, banned or leaves (the observers forget the room)."""

from __future__ import annotations

from fnmatch import fnmatchcase

from maubot.handlers import event
from mautrix.types import EventType, Membership, MemberStateEventContent, StateEvent

from ..context import BotContext
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

    async def _invited(self, evt: StateEvent) -> None:
        inv = self.ctx.settings().invites
        own = server_of(self.ctx.user_id)
        if invite_allowed(
            evt.sender, own, inv.allowed_users, inv.allowed_servers, inv.from_anyone
        ):
            self.log.info("accepting invite to %s from %s", evt.room_id, evt.sender)
            await self.ctx.client.join_room(evt.room_id)
        else:
            self.log.info("declining invite to %s from %s (not allowed)", evt.room_id, evt.sender)
            await self.ctx.client.leave_room(
                evt.room_id, reason="rtcbot only accepts invites from allowed users and servers"
            )
