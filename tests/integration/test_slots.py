"""The room's MSC4143 call slot (`!call slot`): read by anyone, written by a moderator through
the bot when its power level allows, reported by `!call diag`; and the bot listing itself as
a functional member (MSC4171) once it may."""

from __future__ import annotations

import pytest
from mautrix.errors import MNotFound

from rtcbot.diagnostics.report import FUNCTIONAL, SLOT
from rtcbot.matrix.functional_members import FUNCTIONAL_MEMBERS
from rtcbot.rtc.slots import ROOM_SLOT, SLOT_TYPES
from tests.integration.test_diagnostics import diag
from tests.stack.matrix_user import MatrixUser, body

pytestmark = pytest.mark.stack


async def test_the_slot_is_shown_opened_by_a_moderator_and_reported(
    make_user, bot_id: str
) -> None:  # type: ignore[no-untyped-def]
    alice: MatrixUser = await make_user("alice")
    mallory: MatrixUser = await make_user("mallory")
    room = await alice.create_room(invite=[bot_id, mallory.user_id])
    await alice.wait_for_member(room, bot_id)
    await mallory.join(room)

    shown = await mallory.command(room, "!call slot", bot_id)
    assert "is not set" in body(shown) and "cannot join the call" in body(shown), body(shown)
    refused = await mallory.command(room, "!call slot open", bot_id)
    assert "power level 50" in body(refused), body(refused)

    # The bot has level 0: it says so instead of failing on a 403, and diag says how to fix.
    cannot = await alice.command(room, "!call slot open", bot_id)
    assert "needs power level 50 and I have 0" in body(cannot), body(cannot)
    report = await diag(alice, room, bot_id)
    assert report.status(SLOT) == "warn", report.body
    assert "the bot has 0" in report.text(SLOT), report.text(SLOT)
    assert report.status(FUNCTIONAL) == "warn", report.body
    assert "needs power level 50" in report.text(FUNCTIONAL), report.text(FUNCTIONAL)
    for kind in SLOT_TYPES:
        with pytest.raises(MNotFound):
            await alice.get_state_event(room, kind, ROOM_SLOT)

    levels = await alice.get_state_event(room, "m.room.power_levels")
    levels.setdefault("users", {})[bot_id] = 50
    await alice.put_state(room, "m.room.power_levels", "", levels)
    opened = await alice.command(room, "!call slot open", bot_id)
    assert "is now open" in body(opened), body(opened)
    for kind in SLOT_TYPES:
        # An unencrypted room: no `encryption` (matrix-rust-rtc slot.rs).
        assert await alice.get_state_event(room, kind, ROOM_SLOT) == {
            "status": "open",
            "application": {"type": "m.call"},
        }
    report = await diag(alice, room, bot_id)
    assert report.status(SLOT) == "ok", report.body
    # With level 50 the bot also listed itself as a service member (MSC4171), so that
    # clients do not count it as a person.
    functional = await alice.get_state_event(room, FUNCTIONAL_MEMBERS)
    assert functional == {"service_members": [bot_id]}, functional
    assert report.status(FUNCTIONAL) == "ok", report.body

    closed = await alice.command(room, "!call slot close", bot_id)
    assert "is now closed" in body(closed), body(closed)
    assert (await alice.get_state_event(room, SLOT_TYPES[1], ROOM_SLOT))["status"] == "closed"
