"""A room's media session with fakes at its ports: the calls, the tokens, the recovery and the
retention are stand-ins; what is asserted is what the session says and what it leaves behind.

The LiveKit side cannot be reached here: the fake token service refuses, which is the real
path a failed join takes (the stack tests cover the joins that succeed)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from livekit import rtc

from rtcbot.context import BotContext
from rtcbot.matrix.publisher import PublishError
from rtcbot.media.tokens import SfuAuthError
from rtcbot.metrics import Metrics
from rtcbot.recording.errors import MediaError
from rtcbot.recording.session import RoomMedia
from rtcbot.recording.settings import RecordingSettings
from rtcbot.recording.shared import MediaShared
from rtcbot.settings import Settings
from rtcbot.tasks import Tasks

ROOM, OTHER = "!room:example.org", "!other:example.org"
BOT = "@rtcbot:example.org"
LOG = logging.getLogger("test.session")


class Calls:
    """The calls as the session sees them (ports.CallMembership)."""

    def __init__(self, people: bool = True) -> None:
        self.people = people
        self.joined: list[str] = []
        self.left: list[str] = []
        self.members: dict[str, tuple[str, str]] = {}
        self.names: dict[str, str] = {}

    async def require_call(self, room_id: str) -> None:
        if not self.people:
            raise PublishError("There is no call in this room right now.")

    def publisher(self, room_id: str) -> Any:
        return None

    async def join(self, room_id: str, intent: str = "audio", remember: bool = True) -> Any:
        self.joined.append(room_id)

    async def leave(self, room_id: str) -> bool:
        self.left.append(room_id)
        return True

    def member_by_identity(self, room_id: str, identity: str) -> tuple[str, str] | None:
        return self.members.get(identity)

    def known_name(self, room_id: str, user_id: str) -> str | None:
        return self.names.get(user_id)

    async def display_name(self, room_id: str, user_id: str) -> str:
        return self.names.get(user_id, user_id)

    async def has_people(self, room_id: str) -> bool:
        return self.people


class RefusingAccess:
    """The token service says no: the participant cannot connect."""

    async def access(self, room_id: str, roles: Any, name: str) -> Any:
        raise SfuAuthError("unauthorised", 401, "The service refused the bot's token.")

    async def update_grants(self, *args: Any) -> None:
        return None


@dataclasses.dataclass
class Bench:
    shared: MediaShared
    calls: Calls
    ended: list[str]
    asked_withheld: list[str]

    def session(self, room_id: str = ROOM) -> RoomMedia:
        return RoomMedia(room_id, self.shared)


def bench(tmp_path: Path, *, people: bool = True, running: int = 0, **recording: Any) -> Bench:
    settings = dataclasses.replace(
        Settings(),
        command="rec",
        recording=RecordingSettings(directory=str(tmp_path), spoken_consent=False, **recording),
    )
    ctx = BotContext(
        client=SimpleNamespace(mxid=BOT, device_id="BOTDEV"),  # type: ignore[arg-type]
        http=None,  # type: ignore[arg-type]
        db=None,  # type: ignore[arg-type]
        notices=None,  # type: ignore[arg-type]
        metrics=Metrics(),
        log=LOG,
        settings=lambda: settings,
        tasks=Tasks(LOG),
    )
    calls = Calls(people)
    asked_withheld: list[str] = []

    def withheld_for(room_id: str) -> Any:
        asked_withheld.append(room_id)
        return lambda identity: identity == "@bob:example.org:PHONE"

    shared = MediaShared(
        ctx,
        cast(Any, calls),
        LOG,
        cast(Any, RefusingAccess()),
        cast(Any, None),  # recovery: never reached before a recording runs
        cast(Any, None),  # retention: idem
        cast(Any, None),  # other SFUs: idem
        recordings_running=lambda: running,
        withheld_for=withheld_for,
    )
    ended: list[str] = []

    async def recording_ended(room_id: str) -> None:
        ended.append(room_id)

    shared.recording_ended.add(recording_ended)
    return Bench(shared, calls, ended, asked_withheld)


async def test_a_second_start_is_refused_with_the_configured_command_word(tmp_path: Path) -> None:
    session = bench(tmp_path).session()
    session.recorder = cast(Any, object())  # one is running
    with pytest.raises(MediaError, match=r"already recording.*`!rec record stop` ends it"):
        await session.start_recording()


async def test_no_call_no_recording_and_nothing_left_behind(tmp_path: Path) -> None:
    b = bench(tmp_path, people=False)
    session = b.session()
    with pytest.raises(MediaError, match="no call in this room"):
        await session.start_recording()
    assert session.recorder is None and session.presence is None and b.calls.joined == []


async def test_the_instance_limit_refuses_before_anything_is_made(tmp_path: Path) -> None:
    b = bench(tmp_path, running=2, max_concurrent=2)
    session = b.session()
    with pytest.raises(MediaError, match="2"):
        await session.start_recording()
    assert session.presence is None and b.calls.joined == [] and b.asked_withheld == []


async def test_a_failed_media_join_says_why_and_undoes_what_it_did(tmp_path: Path) -> None:
    b = bench(tmp_path)
    session = b.session()
    with pytest.raises(MediaError, match="I could not join the call's media"):
        await session.start_recording()
    # The membership it published for the recording is gone again, the participant too,
    # and whoever followed the recording (captions, the call card) was told it ended.
    assert b.calls.joined == [ROOM] and b.calls.left == [ROOM]
    assert session.recorder is None and session.presence is None
    assert not session.joined_for_media and not session.starting
    assert b.ended == [ROOM]


async def test_the_opt_outs_are_asked_once_per_recording_not_per_frame(tmp_path: Path) -> None:
    b = bench(tmp_path)
    session = b.session()
    with pytest.raises(MediaError):
        await session.start_recording()  # the question is made before the media join
    for _ in range(50):
        assert session.withheld("@bob:example.org:PHONE")
        assert not session.withheld("@alice:example.org:LAPTOP")
    assert b.asked_withheld == [ROOM]


def participant(identity: str, kind: Any = rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD) -> Any:
    return SimpleNamespace(identity=identity, kind=kind)


async def test_the_recorders_questions_names_and_who_counts(tmp_path: Path) -> None:
    b = bench(tmp_path)
    session = b.session()
    b.calls.members["hashedIdentity"] = ("@carol:example.org", "TABLET")
    b.calls.names["@carol:example.org"] = "Carol C."
    assert session.name_for("hashedIdentity") == ("Carol C.", "TABLET")
    assert session.name_for("@dave:example.org:DESK") == ("dave", "DESK")  # no name known yet
    assert session.name_for("someone") == ("", "")
    assert await session.resolve_name("hashedIdentity") == ("Carol C.", "TABLET")
    assert session.excludes(participant(f"{BOT}:BOTDEV"))
    assert session.ignores(participant(f"{BOT}:BOTDEV"))
    assert session.ignores(participant("egress", rtc.ParticipantKind.PARTICIPANT_KIND_EGRESS))
    assert not session.ignores(participant("@dave:example.org:DESK"))


async def test_nothing_to_stop_and_one_room_does_not_touch_another(tmp_path: Path) -> None:
    b = bench(tmp_path)
    room, other = b.session(ROOM), b.session(OTHER)
    other.recorder = cast(Any, object())
    assert await room.stop_recording("stopped by alice") is None
    await room.end_roles("the bot left the call")
    assert other.recorder is not None and b.calls.left == [] and b.ended == []
