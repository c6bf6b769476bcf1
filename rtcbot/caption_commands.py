"""`!call captions [on|off]`: live captions in a thread while this room's calls are recorded."""

from __future__ import annotations

from .commands import CommandContext, CommandRouter
from .context import BotContext
from .transcripts.captions import FEATURE, LiveCaptions


class CaptionCommands:
    def __init__(self, ctx: BotContext, captions: LiveCaptions) -> None:
        self.ctx = ctx
        self.captions = captions

    def register(self, router: CommandRouter) -> None:
        router.add(
            "captions",
            "[on|off]",
            "live captions in a thread while I record a call here",
            self.command,
        )

    async def command(self, ctx: CommandContext) -> None:
        arg = (ctx.line.args or ("",))[0].lower()
        if arg in ("on", "off"):
            await self.ctx.db.set_feature(ctx.room_id, FEATURE, arg == "on")
            running = self.captions.switched(ctx.room_id, arg == "on")
            if arg == "off":
                await ctx.reply("💬 Live captions are off in this room.")
                return
            await ctx.reply(
                "💬 Live captions are on in this room: while I record a call, what each person "
                "says appears in a thread within a few seconds (recognised on the bot's own "
                "server)." + (" They start now." if running else "")
            )
            return
        if arg:
            await ctx.reply(f"Usage: `{ctx.prefix} captions [on|off]`")
            return
        enabled, source = await self.captions.enabled_in(ctx.room_id)
        await ctx.reply(
            f"💬 Live captions here: {'on' if enabled else 'off'} ({source}). "
            f"`{ctx.prefix} captions on|off` changes it."
        )
