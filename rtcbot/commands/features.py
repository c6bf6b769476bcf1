"""`!call transcript|captions [on|off]`: a room's own choice for a feature the config turns on
or off by default (table room_feature), with no argument the current state and who chose it."""

from __future__ import annotations

from collections.abc import Callable

from ..context import BotContext
from .router import CommandContext, CommandRouter


async def feature_enabled(
    ctx: BotContext, room_id: str, feature: str, default: bool
) -> tuple[bool, str]:
    """On or off in this room, and what decided it (the room, or the bot's default)."""
    own = await ctx.db.get_feature(room_id, feature)
    if own is not None:
        return own, "set for this room"
    return default, "the bot's default"


class FeatureCommand:
    def __init__(
        self,
        ctx: BotContext,
        feature: str,
        *,
        emoji: str,
        title: str,
        help_text: str,
        on_text: str,
        default: Callable[[], bool],
        switched: Callable[[str, bool], str] | None = None,
    ) -> None:
        self.ctx = ctx
        self.feature = feature
        self.emoji = emoji
        self.title = title  # "Transcripts", "Live captions"
        self.help_text = help_text
        self.on_text = on_text  # what "on" means, after "… are on in this room: "
        self.default = default
        # Applies the switch at once where it matters (a running recording): a sentence or "".
        self.switched = switched

    def register(self, router: CommandRouter) -> None:
        router.add(self.feature, "[on|off]", self.help_text, self.command)

    async def command(self, ctx: CommandContext) -> None:
        arg = ctx.action  # "show" alone, "" for an unknown word (command_permissions.COMMANDS)
        if arg in ("on", "off"):
            on = arg == "on"
            await self.ctx.db.set_feature(ctx.room_id, self.feature, on)
            now = self.switched(ctx.room_id, on) if self.switched is not None else ""
            text = f"{self.on_text}." if on else "."
            await ctx.reply(f"{self.emoji} {self.title} are {arg} in this room{text}{now}")
            return
        if arg != "show":
            await ctx.reply(f"Usage: `{ctx.prefix} {self.feature} [on|off]`")
            return
        on, source = await feature_enabled(self.ctx, ctx.room_id, self.feature, self.default())
        await ctx.reply(
            f"{self.emoji} {self.title} here: {'on' if on else 'off'} ({source}). "
            f"`{ctx.prefix} {self.feature} on|off` changes it."
        )


def transcript_command(ctx: BotContext) -> FeatureCommand:
    return FeatureCommand(
        ctx,
        "transcript",
        emoji="📝",
        title="Transcripts",
        help_text="a transcript (who said what, when) after each recording in this room",
        on_text=": after each recording I post who said what, in a thread under the recording "
        "(the speech is recognised on the bot's own server)",
        default=lambda: ctx.settings().transcripts.enabled,
    )


def captions_command(ctx: BotContext, switch_now: Callable[[str, bool], bool]) -> FeatureCommand:
    """`switch_now(room, on)`: applies it to a recording running now (True if one runs)."""
    return FeatureCommand(
        ctx,
        "captions",
        emoji="💬",
        title="Live captions",
        help_text="live captions in a thread while I record a call here",
        on_text=": while I record a call, what each person says appears in a thread within a "
        "few seconds (recognised on the bot's own server)",
        default=lambda: ctx.settings().captions.enabled,
        switched=lambda room, on: " They start now." if switch_now(room, on) and on else "",
    )
