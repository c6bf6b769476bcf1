"""`!call recap [on|off|now]`: recaps in this room (moderators), shown to anyone."""

from __future__ import annotations

from mautrix.types import EventID, RoomID

from ..commands.features import FeatureCommand
from ..commands.router import CommandContext, CommandRouter
from ..context import BotContext
from .recaps import FEATURE, Recaps
from .search import TranscriptSearch


class RecapCommand:
    def __init__(self, ctx: BotContext, recaps: Recaps, search: TranscriptSearch) -> None:
        self.recaps = recaps
        self.search = search
        self.feature = FeatureCommand(
            ctx,
            FEATURE,
            emoji="🧾",
            title="Recaps",
            help_text="",
            on_text=": after each transcript a model writes a summary, the decisions and the "
            f"action items ({ctx.settings().recap.where()})",
            default=lambda: ctx.settings().recap.enabled,
        )

    def register(self, router: CommandRouter) -> None:
        router.add(
            "recap",
            "[on|off|now]",
            "a recap (summary, decisions, action items) after each transcript; now: make the "
            "latest one again",
            self.run,
        )

    async def run(self, ctx: CommandContext) -> None:
        if ctx.action in ("on", "off") and not self.recaps.configured():
            await ctx.reply("🧾 Recaps need a model, and none is configured for me.")
            return
        if ctx.action != "now":
            await self.feature.command(ctx)
            return
        if not self.recaps.configured():
            await ctx.reply("🧾 Recaps need a model, and none is configured for me.")
            return
        recording = await self.search.latest_recording(ctx.room_id)
        if recording is None:
            await ctx.reply("🧾 There is no transcript in this room to make a recap of.")
            return
        await ctx.reply("🧾 Making the latest call's recap again, in its thread.")
        await self.recaps.make(RoomID(ctx.room_id), EventID(recording))
