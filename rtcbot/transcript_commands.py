"""`!call transcript [on|off]`: whether this room gets a transcript after each recording."""

from __future__ import annotations

from .commands import CommandContext, CommandRouter
from .context import BotContext
from .transcripts.jobs import FEATURE, TranscriptJobs


class TranscriptCommands:
    def __init__(self, ctx: BotContext, jobs: TranscriptJobs) -> None:
        self.ctx = ctx
        self.jobs = jobs

    def register(self, router: CommandRouter) -> None:
        router.add(
            "transcript",
            "[on|off]",
            "a transcript (who said what, when) after each recording in this room",
            self.transcript,
        )

    async def transcript(self, ctx: CommandContext) -> None:
        arg = (ctx.line.args or ("",))[0].lower()
        if arg in ("on", "off"):
            await self.ctx.db.set_feature(ctx.room_id, FEATURE, arg == "on")
            if arg == "on":
                await ctx.reply(
                    "📝 Transcripts are on in this room: after each recording I post who said "
                    "what, in a thread under the recording (the speech is recognised on the "
                    "bot's own server)."
                )
            else:
                await ctx.reply("📝 Transcripts are off in this room.")
            return
        if arg:
            await ctx.reply(f"Usage: `{ctx.prefix} transcript [on|off]`")
            return
        enabled, source = await self.jobs.enabled_in(ctx.room_id)
        await ctx.reply(
            f"📝 Transcripts here: {'on' if enabled else 'off'} ({source}). "
            f"`{ctx.prefix} transcript on|off` changes it."
        )
