"""The consent notices say what is recorded, whether it is transcribed and captioned, and a
way to opt out that the permission table gives everyone."""

from __future__ import annotations

from rtcbot.commands.line import parse_command_line
from rtcbot.commands.permissions import DEFAULT_LEVELS, resolve
from rtcbot.recording.consent import Consent, posted_notice, spoken_notice


def test_the_notices_follow_the_rooms_transcripts_and_captions() -> None:
    both = posted_notice("call", Consent(transcribed=True, captioned=True), anyone=True)
    assert "one file per person plus a mix" in both
    assert "It is transcribed after the call and captioned live in a thread here." in both
    neither = spoken_notice("call", Consent(transcribed=False, captioned=False))
    assert "It is not transcribed and not captioned." in neither
    assert "anyone" not in posted_notice("call", Consent(False, False), anyone=False)


def test_the_opt_out_the_notices_teach_is_for_level_0() -> None:
    consent = Consent(transcribed=True, captioned=False)
    posted = posted_notice("call", consent, anyone=True)
    spoken = spoken_notice("call", consent)
    taught = [
        posted.split("`")[1],  # `!call record opt out`
        spoken.split("send in the chat: ")[1].replace("exclamation mark, ", "!").rstrip("."),
    ]
    for text in taught:
        line = parse_command_line(text, "call")
        assert line is not None, text
        found = resolve(line.name, line.args, DEFAULT_LEVELS)
        assert found is not None and found.action == "optout", text
        assert DEFAULT_LEVELS[found.key] == 0, text
