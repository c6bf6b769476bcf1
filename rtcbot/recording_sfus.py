"""A recording hears everyone in a multi-SFU call: one link per other SFU where people publish.

Element Call's members publish on their own transports (rtc/sfus.py); people whose
homeserver has another SFU than the bot's are only heard there. While a recording runs, this
watches the call model (memory only, once a second) and keeps the recorder connected to each
other SFU where somebody publishes (`Recorder.add_source`), through that SFU's authorization
service with the bot's OpenID token, like any other member. An SFU nobody publishes on any
more is left. When the bot cannot get in, the room is told once that those people are
missing from the recording (nothing is claimed that did not happen).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from mautrix.types import RoomID

from .context import BotContext
from .matrix.notices import md_escape
from .media.frame_keys import FrameKeys
from .media.participant import Participant, SfuConnectError
from .media.recorder import Recorder
from .media.tokens import SfuAccess, SfuAuthError
from .ports import CallDirectory
from .rtc.sfus import publishing_services, service_key

AccessAt = Callable[[str, str], Awaitable[SfuAccess]]  # (service URL, room) → token


def same_sfu(a: str, b: str) -> bool:
    """Two LiveKit URLs of one server (ws/wss/http/https and a trailing slash aside)."""

    def norm(url: str) -> tuple[str, str]:
        parts = urlsplit(url)
        return parts.netloc.lower(), parts.path.rstrip("/")

    return norm(a) == norm(b)


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
        # An encrypted call's key ring: the links to other SFUs decrypt with it too.
        self.frame_keys = frame_keys
        self.log = log
        self.interval = interval
        self.retry_after = retry_after

    def follow(self, room_id: str, recorder: Recorder) -> None:
        self.ctx.tasks.spawn(self._follow(room_id, recorder), "recording-sfus")

    async def _follow(self, room_id: str, recorder: Recorder) -> None:
        links: dict[str, Participant] = {}
        retry_at: dict[str, float] = {}
        same: set[str] = set()  # other URLs of the bot's own SFU
        told: set[str] = set()
        loop = asyncio.get_running_loop()
        while recorder.state in ("recording", "interrupted"):
            wanted = set(await self._wanted(room_id)) - same
            for url, link in list(links.items()):
                if url not in wanted or link.state in ("failed", "closed"):
                    del links[url]
                    await recorder.remove_source(link)
                    if url in wanted:
                        retry_at[url] = loop.time() + self.retry_after
            for url in sorted(wanted - set(links)):
                if loop.time() < retry_at.get(url, 0.0):
                    continue
                try:
                    new = await self._link(room_id, url)
                    if new is None:
                        same.add(url)
                        continue
                    await recorder.add_source(new)
                except (SfuAuthError, SfuConnectError, OSError) as e:
                    retry_at[url] = loop.time() + self.retry_after
                    self.log.info("cannot record the people on %s: %s", service_name(url), e)
                    if url not in told:
                        told.add(url)
                        await self._tell_missing(room_id, url, e)
                    continue
                links[url] = new
                self.log.info("recording the people on %s too", service_name(url))
            await asyncio.sleep(self.interval)

    async def _wanted(self, room_id: str) -> list[str]:
        call = (await self.calls.room(room_id)).call()
        if call is None:
            return []
        home = service_key(await self.home_service(room_id))
        return [u for u in publishing_services(call.members.values()) if u != home]

    async def _link(self, room_id: str, url: str) -> Participant | None:
        """A participant for that SFU, or None when its token points at the bot's own SFU
        (one service under two URLs: a second connection would replace the bot's own)."""
        first = await self.access_at(url, room_id)
        home = self.home_livekit(room_id)
        if home is not None and same_sfu(first.url, home):
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

    async def _tell_missing(self, room_id: str, url: str, e: Exception) -> None:
        why = getattr(e, "message", None) or f"{type(e).__name__}: {e}"
        await self.ctx.notices.send(
            RoomID(room_id),
            f"⚠️ Some people in this call publish their media on another server "
            f"({md_escape(service_name(url), 80)}), and I could not connect there: "
            f"{md_escape(str(why), 300)}. Their audio is missing from this recording; I keep "
            "trying.",
        )
