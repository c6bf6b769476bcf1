"""What every room's media session shares: the calls, tokens, other SFUs, crash recovery,
retention, and who follows a recording (taps, the end, the posted summary)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from mautrix.types import EventID, RoomID

from ..context import BotContext
from ..matrix.publisher import PublishError
from ..media.presence import Keyrings
from ..media.recorder import AudioTap, RecordingResult
from ..ports import CallMembership
from ..tasks import Hooks
from .access import MediaAccess
from .errors import MediaError
from .recovery import RecordingRecovery
from .retention import Retention
from .sfus import RecordingSfus

# Given the room when a recorder is made; may hand it an audio tap (captions, the call card).
TapFactory = Callable[[str], AudioTap | None]


@dataclass
class MediaShared:
    ctx: BotContext
    calls: CallMembership
    log: logging.Logger
    access: MediaAccess
    recovery: RecordingRecovery
    retention: Retention
    other_sfus: RecordingSfus
    recordings_running: Callable[[], int]  # instance-wide, for recording.max_concurrent
    keyrings: Keyrings | None = None  # encrypted calls: the frame keys of each call
    tap_factories: list[TapFactory] = field(default_factory=list)
    # Told when a recording has ended (before its summary), then when the summary is posted.
    recording_ended: Hooks[[str]] = field(init=False)
    recording_posted: Hooks[[RoomID, RecordingResult, EventID]] = field(init=False)
    # Opt-outs (recording/optout.py): room → "is this LiveKit identity left out now?",
    # and the summary's lines about them.
    withheld_for: Callable[[str], Callable[[str], bool]] | None = None
    summary_notes: Callable[[str], Awaitable[list[str]]] | None = None

    def __post_init__(self) -> None:
        self.recording_ended = Hooks(self.log, "after a recording ended")
        self.recording_posted = Hooks(self.log, "after a recording was posted")

    async def require_call(self, room_id: str) -> None:
        try:
            await self.calls.require_call(room_id)
        except PublishError as e:
            raise MediaError(str(e)) from None

    async def tell_ended(self, room_id: str) -> None:
        await self.recording_ended.emit(room_id)
