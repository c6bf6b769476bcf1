"""What the bot says when it starts recording a call, spoken into the call and posted in the
room: what is recorded, whether it is transcribed and captioned (the room's own choice, else
the config's), and how to stay out, with a command that works for everyone (`record opt out`
is for power level 0 by default: commands/permissions.py). Fixed sentences, nothing of people's.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..context import BotContext


@dataclass(frozen=True)
class Consent:
    transcribed: bool  # a transcript is posted after the recording
    captioned: bool  # live captions are posted while it runs
    recapped: str = ""  # where the recap's model runs, when a recap follows the transcript


async def room_consent(ctx: BotContext, room_id: str) -> Consent:
    """What a recording in `room_id` leads to, as the transcripts and captions decide it."""
    settings = ctx.settings()
    # As feature_commands.feature_enabled decides it (not imported: it is the command side).
    transcribed = await ctx.db.get_feature(room_id, "transcript")
    captioned = await ctx.db.get_feature(room_id, "captions")
    recapped = await ctx.db.get_feature(room_id, "recap")
    transcript = settings.transcripts.enabled if transcribed is None else transcribed
    recap = settings.recap.enabled if recapped is None else recapped
    return Consent(
        transcript,
        settings.captions.enabled if captioned is None else captioned,
        settings.recap.where() if transcript and recap and settings.recap.base_url else "",
    )


def _what(consent: Consent, in_chat: str) -> str:
    transcribed = "transcribed after the call" if consent.transcribed else "not transcribed"
    captioned = f"captioned live {in_chat}" if consent.captioned else "not captioned"
    recap = (
        f" A model {consent.recapped} writes a recap of the transcript."
        if consent.recapped
        else ""
    )
    return f"It is {transcribed} and {captioned}.{recap}"


def spoken_notice(command: str, consent: Consent) -> str:
    """Said into the call when a recording starts (no markup: a voice reads it)."""
    return (
        "This call is now being recorded, every voice in its own file. "
        f"{_what(consent, 'in the chat')} "
        # Heard without the "!", "call record opt out" typed as heard does nothing: say it.
        f"To keep your voice out of it, send in the chat: exclamation mark, {command} record "
        "opt out."
    )


def posted_notice(command: str, consent: Consent, anyone: bool) -> str:
    """Posted (markdown) with every recording start: by a command, a schedule or auto-record.
    `anyone`: opting out needs no power level (`permissions.record_optout` ≤ 0)."""
    who = "; anyone here may use it" if anyone else ""
    return (
        "Everyone's audio in this call is recorded, one file per person plus a mix. "
        f"{_what(consent, 'in a thread here')} Don't want to be recorded? "
        f"`!{command} record opt out` leaves your voice out{who}."
    )
