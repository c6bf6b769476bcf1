"""Opt-outs and identities the bot cannot match yet (review L5), and the identity cache that
is kept only per room and recording (review L7). A matrix_2_0 (hashed) LiveKit identity is
only known once its membership arrives; until then it may be someone who opted out."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from rtcbot.recording.optout import RecordingOptOuts
from rtcbot.rtc.identity import livekit_identity

ROOM = "!room:example.org"
BOB = "@bob:example.org"
BOB_ID = livekit_identity(BOB, "BOBDEV", "member-1")  # hashed


class OptOutRows:
    async def opt_out(self, room_id: str, user_id: str, anonymous: bool) -> None:
        pass


def optouts(members: dict[str, tuple[str, str]]) -> RecordingOptOuts:
    ctx = SimpleNamespace(logger=logging.getLogger("test").getChild)

    async def display_name(room_id: str, user: str) -> str:
        return user[1:].split(":")[0].title()

    return RecordingOptOuts(
        ctx,  # type: ignore[arg-type]
        lambda room, identity: members.get(identity),
        display_name,
        OptOutRows(),  # type: ignore[arg-type]
    )


async def test_an_unmatched_identity_is_held_back_until_it_is_known() -> None:
    members: dict[str, tuple[str, str]] = {}
    o = optouts(members)
    await o.opt_out(ROOM, BOB, anonymous=False)
    withheld = o.withheld_for(ROOM)
    # Bob's media arrives before his membership: before the fix, this audio was written.
    assert withheld(BOB_ID)
    members[BOB_ID] = (BOB, "BOBDEV")  # his membership arrives: still left out (he opted out)
    assert withheld(BOB_ID)
    assert not withheld("@carol:example.org:CAROLDEV")  # a readable identity: known at once
    notes = await o.summary_notes(ROOM)
    assert notes == ["🙈 Left out of the files, the mix and the transcript at their request: Bob."]
    assert o._users == {}  # the room's identities are forgotten with its recording


async def test_an_identity_never_matched_is_named_as_a_count() -> None:
    o = optouts({})
    await o.opt_out(ROOM, BOB, anonymous=True)
    withheld = o.withheld_for(ROOM)
    stranger = livekit_identity("@eve:example.org", "EVEDEV", "m")
    assert withheld(stranger)
    notes = await o.summary_notes(ROOM)
    assert notes == [
        "🙈 Left out: 1 participant I could not match to a member of this room (someone here "
        "opted out, so unknown voices are not kept)."
    ]
    # A room without opt-outs records everyone, matched or not.
    assert not o.withheld_for("!other:example.org")(stranger)
    await o.forgotten(ROOM)
    assert ROOM not in o._users
