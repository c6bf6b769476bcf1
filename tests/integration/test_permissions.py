"""Permissions on the real stack, generated from the one table of commands
(`rtcbot.commands.permissions.COMMANDS`): a level-0 member sends every action and every
spelling of it; what needs more is refused, changes nothing, and says which level it needs;
what is for everyone answers. Judged by what the room shows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rtcbot.commands.permissions import COMMANDS, MODERATOR, describe
from rtcbot.settings import parse_settings
from rtcbot_stack.stack import Stack
from tests.stack.matrix_user import MatrixUser, body, is_reply_to

pytestmark = pytest.mark.stack

REFUSED = "only members with power level"
EVIL_INTENT = "audio [Re-verify your session](https://evil.example)"


def lines_to_send(sid: int, levels: dict[str, int]) -> Iterator[tuple[str, str, str]]:
    """(text, the action's name, its key) for every action and spelling in the table, the
    command alone, and an unknown sub-word (which gets the command's strictest key)."""
    # Arguments that would change something if the action were let through.
    samples = {
        ("schedule", "remove"): str(sid),
        ("schedule", "tz"): "Europe/Berlin",
        ("schedule", "add"): "tomorrow 10:00 Intruder",
        ("announce", "announce"): "I am the bot now",
        ("join", "join"): "audio",
    }
    for command in COMMANDS.values():
        bare = command.action(command.bare)
        alone_key = bare.key_alone or bare.key
        yield f"!call {command.name}", bare.name, alone_key
        if command.free:
            sample = samples.get((command.name, command.name), "")
            if sample:
                yield f"!call {command.name} {sample}", command.name, bare.key
            continue
        for action in command.actions:
            sample = samples.get((command.name, action.name), "")
            for spelling in action.spellings:
                yield f"!call {command.name} {spelling} {sample}".strip(), action.name, action.key
        strictest = max(command.keys(), key=lambda k: levels[k])
        yield f"!call {command.name} frobnicate", "", strictest


async def test_a_level_0_member_gets_exactly_the_level_0_actions(
    stack: Stack, make_user: Any, bot_room: str, alice: MatrixUser, bot_id: str
) -> None:
    levels = parse_settings(stack.plugin_config()).permissions
    mallory: MatrixUser = await make_user("mallory")
    await alice.invite(bot_room, mallory.user_id)
    await mallory.join(bot_room)
    # State that a let-through action would change: a schedule, the notify level, and a call
    # whose membership carries a link in its intent (for `!call status`, review L1).
    added = body(await alice.command(bot_room, "!call schedule add tomorrow 9:00 Standup", bot_id))
    assert added.startswith("Scheduled #"), added
    sid = int(added.removeprefix("Scheduled #").split()[0])
    reply = await alice.command(bot_room, "!call notify summary", bot_id)
    assert "Notifications set to summary" in body(reply), body(reply)
    await alice.start_call(bot_room, bot_id, intent=EVIL_INTENT)

    # Sent one after the other without waiting; each answer is found by what it replies to.
    sent = [
        (await mallory.send_text(bot_room, text), text, action, key)
        for text, action, key in lines_to_send(sid, levels)
    ]
    answers: dict[str, str] = {}
    wrong: list[tuple[str, str]] = []  # every wrong answer, not only the first
    for event_id, text, action, key in sent:
        evt = await mallory.wait_for(
            bot_room, is_reply_to(bot_id, event_id), 60, after=event_id, limit=400
        )
        answers[text] = answer = body(evt)
        if text == "!call status":
            # The intent is shown literally: no link of the member's in the bot's HTML.
            if "evil.example" not in answer or "<a " in evt["content"].get("formatted_body", ""):
                wrong.append((text, evt["content"].get("formatted_body", "")))
        if levels[key] > 0:
            need = f"{REFUSED} {levels[key]} or more may use !call {describe(key)} here"
            ok = need in answer and "you have 0" in answer and f"permissions.{key}" in answer
        else:
            ok = REFUSED not in answer
            if action.startswith("optout"):
                ok = ok and "your voice is left out of this room's recordings" in answer
            if action == "optin":
                ok = ok and "recorded" in answer
        if not ok:
            wrong.append((text, answer))
    print(f"\n[permissions] {len(sent)} lines from mallory (level 0); e.g.")
    for text in (f"!call schedule rm {sid}", "!call record opt out"):
        print(f"  {text!r} → {answers[text]!r}")
    assert not wrong, "\n".join(f"{t!r} → {a!r}" for t, a in wrong)
    assert levels["diag"] >= MODERATOR  # diag spends the bot's own rate limits (review M4)

    # Nothing changed: the schedule, its time zone, the notify level, the room's features.
    listed = body(await alice.command(bot_room, "!call schedule list", bot_id))
    assert f"#{sid} Standup" in listed and "Intruder" not in listed, listed
    tz = body(await alice.command(bot_room, "!call schedule tz", bot_id))
    assert "(the default)" in tz, tz
    notify = body(await alice.command(bot_room, "!call notify", bot_id))
    assert notify.startswith("Notifications here: summary"), notify
    auto = body(await alice.command(bot_room, "!call auto", bot_id))
    assert auto.startswith("Auto-follow here: off"), auto
    for feature in ("transcript", "captions"):
        shown = body(await alice.command(bot_room, f"!call {feature}", bot_id))
        assert "(the bot's default)" in shown, shown
    who = body(await alice.command(bot_room, "!call status", bot_id))
    assert "The bot: not in the call" in who, who
