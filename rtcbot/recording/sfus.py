"""A recording hears everyone in a multi-SFU call: one link per other SFU where people publish.

Element Call's members publish on their own transports (rtc/sfus.py); people whose
homeserver has another SFU than the bot's are only heard there. While a recording runs, this
watches the call model (memory only, once a second) and keeps the recorder connected to each
other SFU where somebody publishes (`Recorder.add_source`), through that SFU's authorization
service with the bot's OpenID token, like any other member. An SFU nobody publishes on any
more is left.

Trust (security review H2, M1, M2): the bot's OpenID token opens every room it is in, so it
goes only to a service the bot trusts (rtc/trust.py: its configuration, its homeserver's
transports, `livekit.trusted_services`); another service gets no request at all, and the
room is told whose audio is missing and why, at once and in the summary. On another SFU only
the identities whose membership publishes there are recorded. What a server answered is never
posted: the room gets fixed sentences, the log the details.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from mautrix.types import RoomID

from ..context import BotContext
from ..matrix.notices import NAME_LIMIT, md_escape
from ..media.frame_keys import FrameKeys
from ..media.participant import Participant, SfuConnectError
from ..media.recorder import Recorder
from ..media.tokens import SfuAccess, SfuAuthError
from ..ports import CallDirectory
from ..rtc.sfus import publishers_by_service, same_sfu, service_key, split_link_key
from ..rtc.trust import trusted_service

AccessAt = Callable[[str, str], Awaitable[SfuAccess]]  # (service URL, room) → token
Trusted = Callable[[], Awaitable[list[str]]]  # the services that may get the bot's token
UNTRUSTED = (
    "publish their audio on another server, which is not one I am configured to trust, so I "
    "don't connect there"
)
UNREACHABLE = "publish their audio on another server, and I could not connect there"


def service_name(url: str) -> str:
    return urlsplit(url).netloc or url


class RecordingSfus:
    def __init__(
        self,
        ctx: BotContext,
        calls: CallDirectory,
        *,
        home_service: Callable[[str], Awaitable[str]],
        home_livekit: Callable[[str], str | None],
        access_at: AccessAt,
        trusted: Trusted,
        log: logging.Logger,
        frame_keys: Callable[[str], FrameKeys | None] = lambda _room: None,
        interval: float = 1.0,
        retry_after: float = 30.0,
    ) -> None:
        self.ctx = ctx
        self.calls = calls
        self.home_service = home_service  # the bot's own transport in that room's call
        self.home_livekit = home_livekit  # the LiveKit URL the bot's participant is on
        self.access_at = access_at
        self.trusted = trusted
        # An encrypted call's key ring: the links to other SFUs decrypt with it too.
        self.frame_keys = frame_keys
        self.log = log
        self.interval = interval
        self.retry_after = retry_after
        # room → service URL → the identities of the members who publish there (updated
        # once a second; a link records only those)
        self._publishers: dict[str, dict[str, set[str]]] = {}
        # room → why → user ids whose audio is missing, for the recording's summary
        self._missing: dict[str, dict[str, set[str]]] = {}

    def follow(self, room_id: str, recorder: Recorder) -> None:
        self._missing[room_id] = {}
        self.ctx.tasks.spawn(self._follow(room_id, recorder), "recording-sfus")

    async def summary_notes(self, room_id: str) -> list[str]:
        """Lines for the recording's summary: whose audio is missing, and why."""
        missing = self._missing.pop(room_id, {})
        self._publishers.pop(room_id, None)
        return [
            f"⚠️ Not in this recording: {await self._names(room_id, users)}: they {why}."
            for why, users in missing.items()
            if users
        ]

    async def _follow(self, room_id: str, recorder: Recorder) -> None:
        links: dict[str, Participant] = {}
        retry_at: dict[str, float] = {}
        same: set[str] = set()  # other URLs of the bot's own SFU
        told: set[tuple[str, str]] = set()  # (why, user) said in the room already
        loop = asyncio.get_running_loop()
        while recorder.state in ("recording", "interrupted"):
            publishers = await self._wanted(room_id)
            previous = self._publishers.get(room_id, {})
            self._publishers[room_id] = publishers
            wanted = set(publishers) - same
            for url, link in list(links.items()):
                if url not in wanted or link.state in ("failed", "closed"):
                    del links[url]
                    await recorder.remove_source(link)
                    if url in wanted:
                        retry_at[url] = loop.time() + self.retry_after
                elif publishers[url] != previous.get(url):
                    recorder.recheck_source(link)  # someone began or stopped publishing there
            trusted = await self.trusted()
            for url in sorted(wanted - set(links)):
                if trusted_service(split_link_key(url)[0], trusted) is None:
                    await self._tell_missing(room_id, UNTRUSTED, publishers[url], told)
                    continue
                if loop.time() < retry_at.get(url, 0.0):
                    continue
                try:
                    new = await self._link(room_id, url)
                    if new is None:
                        same.add(url)
                        continue
                    await recorder.add_source(new, self._admits(room_id, url))
                except (SfuAuthError, SfuConnectError, OSError) as e:
                    retry_at[url] = loop.time() + self.retry_after
                    self.log.info("cannot record the people on %s: %s", service_name(url), e)
                    await self._tell_missing(room_id, UNREACHABLE, publishers[url], told)
                    continue
                links[url] = new
                self.log.info("recording the people on %s too", service_name(url))
            await asyncio.sleep(self.interval)

    def _admits(self, room_id: str, url: str) -> Callable[[str], bool]:
        def admits(identity: str) -> bool:
            return identity in self._publishers.get(room_id, {}).get(url, set())

        return admits

    async def _wanted(self, room_id: str) -> dict[str, set[str]]:
        """The other services where members publish → who publishes there."""
        call = (await self.calls.room(room_id)).call()
        if call is None:
            return {}
        home = service_key(await self.home_service(room_id))
        found = publishers_by_service(call.members.values())
        return {u: who for u, who in found.items() if u != home}

    async def _link(self, room_id: str, url: str) -> Participant | None:
        """A participant for that SFU, or None when its token points at the bot's own SFU
        (one service under two URLs: a second connection would replace the bot's own)."""
        first = await self.access_at(url, room_id)
        home = self.home_livekit(room_id)
        own_slot = split_link_key(await self.home_service(room_id))[1]
        other_slot = split_link_key(url)[1] != own_slot  # another LiveKit room there
        if home is not None and same_sfu(first.url, home) and not other_slot:
            return None
        pending = [first]

        async def access() -> SfuAccess:
            return pending.pop() if pending else await self.access_at(url, room_id)

        return Participant(
            access,
            self.log.getChild("other_sfu"),
            name="other SFU",
            frame_keys=self.frame_keys(room_id),
        )

    def _users(self, room_id: str, identities: set[str]) -> set[str]:
        owners = (self.calls.member_by_identity(room_id, i) for i in identities)
        return {owner[0] for owner in owners if owner is not None}

    async def _names(self, room_id: str, users: set[str]) -> str:
        names = [await self.calls.display_name(room_id, u) or u for u in sorted(users)]
        return ", ".join(md_escape(n, NAME_LIMIT) for n in sorted(names))

    async def _tell_missing(
        self, room_id: str, why: str, identities: set[str], told: set[tuple[str, str]]
    ) -> None:
        """Note those people as missing for the summary; tell the room once per person."""
        users = self._users(room_id, identities)
        self._missing.setdefault(room_id, {}).setdefault(why, set()).update(users)
        new = {u for u in users if (why, u) not in told}
        if not new:
            return
        told.update((why, u) for u in new)
        await self.ctx.notices.send(
            RoomID(room_id),
            f"⚠️ {await self._names(room_id, new)}: they {why}. Their audio is missing from "
            "this recording.",
        )
