"""`!call record|announce|auto`: the media commands."""

from __future__ import annotations

import time

from ..commands.router import CommandContext, CommandRouter
from ..context import BotContext
from ..matrix.crypto_status import refused_without_crypto
from ..matrix.notices import NAME_LIMIT, md_escape
from ..matrix.permissions import user_level
from ..ports import CallDirectory
from .deletion import RecordingDeleter
from .errors import MediaError
from .optout import RecordingOptOuts
from .posts import fmt_s
from .sessions import ROLES, MediaSessions

RECORD_USAGE = "[start|stop|status|opt out [anonymous]|opt in|delete last]"
MAX_ANNOUNCE = 500  # characters; longer is refused (it would take minutes to speak)


class MediaCommands:
    def __init__(
        self,
        ctx: BotContext,
        media: MediaSessions,
        calls: CallDirectory,
        optouts: RecordingOptOuts,
        deleter: RecordingDeleter,
    ) -> None:
        self.ctx = ctx
        self.media = media
        self.calls = calls
        self.optouts = optouts
        self.deleter = deleter

    def register(self, router: CommandRouter) -> None:
        router.add(
            "record",
            RECORD_USAGE,
            "record the call: a file per speaker plus a mix, posted here at the end; "
            "opt out leaves your own voice out of this room's recordings (anyone may)",
            self.record,
        )
        router.add(
            "announce", "<text>", "speak the text into the call (and post it here)", self.announce
        )
        router.add(
            "auto",
            "record|announce|off",
            "join every call in this room as recorder or announcer",
            self.auto,
        )

    async def record(self, ctx: CommandContext) -> None:
        # The router found the action in command_permissions.COMMANDS (and checked its level).
        action = ctx.action
        media = self.media
        if action == "status":
            rec = media.recorder(ctx.room_id)
            if rec is None:
                await ctx.reply("Not recording in this room.")
                return
            st = rec.status()
            who = ", ".join(md_escape(p, NAME_LIMIT) for p in st.participants) or "nobody yet"
            await ctx.reply(
                f"🔴 Recording for {fmt_s(st.duration_s)} (part {st.segment}): {who}; "
                f"{st.bytes_written / 1e6:.1f} MB so far, {st.dropped_frames} frames dropped."
            )
            return
        if action in ("optout", "optout_anonymous", "optin"):
            await self._opt(ctx, action)
            return
        if action == "delete":
            await self._delete(ctx)
            return
        if action not in ("start", "stop"):
            await ctx.reply(f"Usage: `{ctx.prefix} record {RECORD_USAGE}`")
            return
        if action == "start":
            if await refused_without_crypto(self.ctx.client, ctx.room_id, "record", ctx.reply):
                return
            try:
                await media.start_recording(ctx.room_id)
            except MediaError as e:
                await ctx.reply(str(e))
                return
            name = md_escape(await self.calls.display_name(ctx.room_id, ctx.sender), NAME_LIMIT)
            await ctx.reply(
                f"🔴 Recording started by {name}; `{ctx.prefix} record stop` ends it. "
                + await media.consent_text(ctx.room_id)
            )
        else:
            name = md_escape(await self.calls.display_name(ctx.room_id, ctx.sender), NAME_LIMIT)
            result = await media.stop_recording(ctx.room_id, reason_text=f"stopped by {name}")
            if result is None:
                await ctx.reply("Not recording in this room.")

    async def _opt(self, ctx: CommandContext, action: str) -> None:
        """Anyone may leave their own voice out (or take it back); never somebody else's."""
        optouts = self.optouts
        name = md_escape(await self.calls.display_name(ctx.room_id, ctx.sender), NAME_LIMIT)
        if action == "optin":
            if await optouts.opt_in(ctx.room_id, ctx.sender):
                await ctx.reply(f"🎙️ {name}, your voice is recorded again in this room's calls.")
            else:
                await ctx.reply(f"{name}, you had not opted out here: your voice is recorded.")
            return
        anonymous = action == "optout_anonymous"
        if ctx.action_args:
            await ctx.reply(f"Usage: `{ctx.prefix} record opt out [anonymous]`")
            return
        await optouts.opt_out(ctx.room_id, ctx.sender, anonymous)
        running = self.media.recorder(ctx.room_id) is not None
        now = " (the recording running now too)" if running else ""
        how = (
            "the summary will only say that one person opted out, not who"
            if anonymous
            else "the summary will say that you opted out"
        )
        await ctx.reply(
            f"🙈 {name}, your voice is left out of this room's recordings from now on{now}: "
            f"your own file, the mix, the transcript and the captions; {how}. Your words in "
            "earlier transcripts leave this room's search. "
            f"`{ctx.prefix} record opt in` takes it back."
        )

    async def _delete(self, ctx: CommandContext) -> None:
        """Only `delete last`: nothing is deleted by a slip of the keyboard."""
        if ctx.action_args != ("last",):
            await ctx.reply(
                f"Usage: `{ctx.prefix} record delete last` redacts the latest recording's "
                "messages (summary, files, transcript) and removes its files from my disk."
            )
            return
        rec = await self.deleter.store.latest(ctx.room_id)
        if rec is None:
            await ctx.reply("There is no posted recording of this room that I could delete.")
            return
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(rec.ended_ms / 1000))
        if self.deleter.transcribing(rec):
            await ctx.reply(
                f"The recording of {when} is still being transcribed; delete it once its "
                "transcript is posted."
            )
            return
        name = md_escape(await self.calls.display_name(ctx.room_id, ctx.sender), NAME_LIMIT)
        done = await self.deleter.delete(rec, f"recording deleted by {ctx.sender}")
        files = "1 file" if done.files_removed == 1 else f"{done.files_removed} files"
        messages = "1 message" if done.redacted == 1 else f"{done.redacted} messages"
        text = (
            f"🗑️ {name} deleted the recording of {when}: {messages} redacted, "
            f"{files} removed from my disk."
        )
        if done.not_redacted:
            text += (
                f" {done.not_redacted} could not be redacted; "
                f"`{ctx.prefix} record delete last` tries again."
            )
        await ctx.reply(text)

    async def announce(self, ctx: CommandContext) -> None:
        text = ctx.line.rest.strip()
        if not text:
            await ctx.reply(f"Usage: `{ctx.prefix} announce <text>`")
            return
        if len(text) > MAX_ANNOUNCE:
            await ctx.reply("That is too long to speak; keep announcements under 500 characters.")
            return
        if await refused_without_crypto(self.ctx.client, ctx.room_id, "announce", ctx.reply):
            return
        try:
            seconds = await self.media.announce(ctx.room_id, text)
        except MediaError as e:
            await ctx.reply(str(e))
            return
        name = md_escape(await self.calls.display_name(ctx.room_id, ctx.sender), NAME_LIMIT)
        said = md_escape(text, MAX_ANNOUNCE)
        await ctx.reply(f"📢 {name}: {said}  _(spoken in the call, {seconds:.1f} s)_")

    async def auto(self, ctx: CommandContext) -> None:
        role = ctx.action  # "show" alone, "" for an unknown word (command_permissions.COMMANDS)
        if role not in (*ROLES, "off"):
            current = await self.ctx.db.get_auto_role(ctx.room_id) or "off"
            await ctx.reply(
                f"Auto-follow here: {current}. Usage: `{ctx.prefix} auto record|announce|off`"
            )
            return
        if role != "off" and await refused_without_crypto(
            self.ctx.client, ctx.room_id, "auto", ctx.reply
        ):
            return
        if role == "record":
            # Recording every call needs what one recording needs (the router checked `auto`).
            need = self.ctx.settings().permissions["record"]
            level = await user_level(self.ctx.client, ctx.room_id, ctx.sender)
            if level < need:
                await ctx.reply(
                    f"Sorry, auto-record needs the level for recording, {need} (you have {level})."
                )
                return
        await self.ctx.db.set_auto_role(ctx.room_id, None if role == "off" else role)
        what = {
            "record": "I'll record every call in this room (and say so)",
            "announce": "I'll join every call here as announcer",
            "off": "I won't join calls here by myself",
        }[role]
        await ctx.reply(f"Auto-follow set to {role}: {what}.")
