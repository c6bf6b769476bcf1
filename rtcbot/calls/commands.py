"""`!call join|leave|status|who|notify`: the membership commands."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from ..calls.settings import NOTIFY_LEVELS
from ..commands.router import CommandContext, CommandRouter
from ..context import BotContext
from ..matrix.crypto_status import refused_without_crypto
from ..matrix.notices import NAME_LIMIT, md_escape
from ..matrix.permissions import check_call_permission, explain_members
from ..matrix.publisher import LeaveMode, PublishError
from ..ports import CallMembership
from ..rtc.announce import join_names
from ..rtc.announce import people as people_count

INTENTS = {"audio": "audio", "voice": "audio", "video": "video"}


def _ago(ms: int | None, now_ms: int) -> str:
    if ms is None:
        return "?"
    secs = max(0, (now_ms - ms) // 1000)
    if secs < 90:
        return f"{secs} s"
    if secs < 5400:
        return f"{secs // 60} min"
    return f"{secs // 3600} h {secs % 3600 // 60} min"


def call_heading(application: str, slot_id: str, started: str, people: int, peak: int) -> str:
    """The first line of a call in `!call status`. The application and slot come from
    members' state events: escaped, never in a code span (a backtick would end it)."""
    label = "Call" if application == "m.call" else f"Session {md_escape(application, 80)}"
    return (
        f"**{label}** ({md_escape(slot_id, 120)}), started {started} ago, "
        f"{people_count(people)}, peak {peak}:"
    )


def member_line(name: str, device_id: str, intent: str | None, since: str, kind: str) -> str:
    """One member in `!call status`; `name` is escaped already, the rest is the member's
    state event (device id, `m.call.intent`): escaped here (review L1)."""
    intent_part = f", {md_escape(intent, 80)}" if intent else ""
    return (
        f"* {name} — device {md_escape(device_id, 80)}{intent_part}, since {since} "
        f"({md_escape(kind, 40)})"
    )


class CallCommands:
    def __init__(
        self,
        ctx: BotContext,
        calls: CallMembership,
        end_media: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        self.ctx = ctx
        self.calls = calls
        # `!call leave` also ends the bot's media roles in the room (recording, announcer).
        self.end_media = end_media

    def register(self, router: CommandRouter) -> None:
        router.add("join", "[audio|video]", "join the room's call", self.join)
        router.add("leave", "", "leave the call", self.leave)
        router.add("who", "", "who is in the call now", self.who)
        router.add("status", "", "call members, ghosts, and my own membership", self.status)
        router.add("notify", "off|summary|all", "how much I say about calls here", self.notify)

    async def join(self, ctx: CommandContext) -> None:
        intent = INTENTS.get((ctx.line.args or ("audio",))[0].lower())
        if intent is None:
            await ctx.reply(f"Usage: `{ctx.prefix} join [audio|video]`")
            return
        if await refused_without_crypto(self.ctx.client, ctx.room_id, "join", ctx.reply):
            return
        try:
            pub = await self.calls.join(ctx.room_id, intent)
        except PublishError as e:
            await ctx.reply(str(e))
            return
        st = pub.status()
        if st.mode == LeaveMode.DELAYED and st.delay_ms:
            how = f"with a delayed leave of {st.delay_ms / 1000:g} s, so I leave by myself if I crash"
        else:
            how = f"with an expiring membership ({st.fallback_reason})"
        await ctx.reply(f"Joined the {intent} call {how}.")

    async def leave(self, ctx: CommandContext) -> None:
        if self.end_media is not None:
            await self.end_media(
                ctx.room_id, f"{md_escape(ctx.sender)} asked me to leave the call"
            )
        left = await self.calls.leave(ctx.room_id)
        await ctx.reply("Left the call." if left else "I am not in a call in this room.")

    async def who(self, ctx: CommandContext) -> None:
        calls = await self.calls.room(ctx.room_id)
        call = calls.call()
        if call is None or not call.members:
            await ctx.reply("Nobody is in a call here.")
            return
        names = [
            md_escape(await self.calls.display_name(ctx.room_id, u), NAME_LIMIT)
            for u in call.user_ids()
        ]
        count = len(names)
        await ctx.reply(
            f"In the call ({count} {'person' if count == 1 else 'people'}): "
            f"{join_names(names, limit=50)}"
        )

    async def status(self, ctx: CommandContext) -> None:
        now = int(time.time() * 1000)
        calls = await self.calls.room(ctx.room_id)
        lines: list[str] = []
        if not calls.calls:
            lines.append("No active call in this room.")
        for call in calls.calls.values():
            lines.append(
                call_heading(
                    call.application,
                    call.slot_id,
                    _ago(call.started_at_ms, now),
                    len(call.user_ids()),
                    call.peak_participants,
                )
            )
            for m in sorted(call.members.values(), key=lambda m: m.since_ms):
                name = md_escape(await self.calls.display_name(ctx.room_id, m.user_id), NAME_LIMIT)
                lines.append(
                    member_line(name, m.device_id, m.intent, _ago(m.since_ms, now), str(m.kind))
                )
        ghosts = calls.ghosts(now)
        for g in ghosts:
            name = md_escape(await self.calls.display_name(ctx.room_id, g.user_id), NAME_LIMIT)
            lines.append(
                f"* 👻 {name} — device {md_escape(g.device_id, 80)}: membership expired but still in "
                "the room state (a client that crashed without leaving)"
            )
        lines.append("")
        pub = self.calls.publisher(ctx.room_id)
        if pub is None:
            lines.append("**The bot**: not in the call.")
        else:
            st = pub.status()
            lines.append(f"**The bot**: {st.state.value}.")
            if st.mode == LeaveMode.DELAYED:
                beat = (
                    f"last heartbeat {_ago(int(st.last_heartbeat_ts * 1000), now)} ago"
                    if st.last_heartbeat_ts
                    else "no heartbeat yet"
                )
                lines.append(
                    f"* delayed leave: {'scheduled' if st.has_delayed_leave else 'MISSING'}"
                    f", delay {st.delay_ms} ms, {beat}, {st.heartbeats_ok} restarts ok, "
                    f"{st.heartbeat_failures} failed"
                )
            elif st.mode == LeaveMode.EXPIRING:
                lines.append(
                    f"* no delayed leave: {md_escape(st.fallback_reason or '', 200)}; the membership expires "
                    "by itself and is refreshed on time (expiring fallback)"
                )
            if st.expires_at_ms:
                lines.append(
                    f"* membership expires in {_ago(now, st.expires_at_ms)} unless refreshed"
                )
            if st.rejoins:
                lines.append(f"* rejoined {st.rejoins}× after the membership was removed")
            if st.last_error:
                lines.append(f"* last error: {md_escape(st.last_error, 300)}")
        try:
            perm = await check_call_permission(self.ctx.client, ctx.room_id, self.ctx.client.mxid)
            if not perm.members_can_join:
                lines.append("")
                lines.append("⚠️ " + explain_members(perm))
        except Exception:
            pass
        await ctx.reply("\n".join(lines))

    async def notify(self, ctx: CommandContext) -> None:
        level = ctx.action  # "show" alone, "" for an unknown word (command_permissions.COMMANDS)
        if level not in NOTIFY_LEVELS:
            current = await self.ctx.db.get_notify_level(ctx.room_id)
            current = current or f"{self.ctx.settings().notices.default_level} (default)"
            await ctx.reply(
                f"Notifications here: {current}. Usage: `{ctx.prefix} notify off|summary|all`"
            )
            return
        await self.ctx.db.set_notify_level(ctx.room_id, level)
        what = {
            "off": "I won't post about calls here",
            "summary": "I'll post when calls start and end",
            "all": "I'll post when calls start and end, and who joins and leaves",
        }[level]
        await ctx.reply(f"Notifications set to {level}: {what}.")
