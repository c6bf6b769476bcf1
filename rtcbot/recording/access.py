"""How the bot gets into a call's LiveKit room: its identity and its token.

Minted locally with the least privilege of the roles held when a LiveKit API secret is
configured (a role added later widens the live participant's permissions, one that ends
narrows them), else from the MatrixRTC authorization service (OpenID → /sfu/get for the
bot's state-event membership, /get_token if that is gone), a trusted one only
(recording/trusted_services.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mautrix.api import Method
from mautrix.api import Path as ApiPath

from ..context import BotContext
from ..media.homeserver_token_client import homeserver_access
from ..media.tokens import (
    AuthServiceClient,
    Roles,
    SfuAccess,
    SfuAuthError,
    mint_local_token,
    update_live_grants,
)
from ..ports import CallDirectory, HomeTransport
from ..rtc.identity import livekit_room_alias, member_identity
from ..rtc.member_fields import Transport
from ..rtc.own_content import CURRENT_SLOT
from ..rtc.sfus import ROOM_SLOT, link_key, split_link_key, transports_by_key
from ..rtc.trust import trusted_service
from .errors import MediaError
from .trusted_services import TrustedServices


@dataclass(frozen=True)
class _Foreign:
    transport: Transport
    server_name: str | None  # the homeserver whose SFU it is (None: the bot's own)

    @property
    def url(self) -> str | None:
        return self.transport.url

    @property
    def key(self) -> str | None:
        return self.transport.key


class MediaAccess:
    def __init__(
        self,
        ctx: BotContext,
        calls: CallDirectory,
        home_transport: HomeTransport,
        livekit_url_of: Callable[[str], str | None],
    ) -> None:
        self.ctx = ctx
        self.calls = calls
        self.home_transport = home_transport
        self.log = ctx.logger("media")
        # The LiveKit URL the bot's participant in a room is connected to, if it is.
        self.livekit_url_of = livekit_url_of
        self._auth = AuthServiceClient(ctx.http, log=self.log.getChild("auth_client"))
        # Where the bot's token may go; other SFUs' services through their own guarded pool.
        self.trust = TrustedServices(
            ctx, self.home_service_url, self.log.getChild("other_auth_client")
        )

    async def close(self) -> None:
        await self.trust.close()

    def own_member(self, room_id: str | None = None) -> tuple[str, str | None]:
        """(the slot whose LiveKit room the bot is in, its member id when that membership is
        MSC4143 current) — in Element Call's dialect the room call's slot, no member id."""
        pub = self.calls.publisher(room_id) if room_id else None
        wire = getattr(pub, "wire", None)
        if wire is not None and wire.dialect == "current":
            return CURRENT_SLOT, str(wire.member_id)
        return ROOM_SLOT, None

    def identity(self, room_id: str | None = None) -> str:
        """The bot's LiveKit identity in a call: that of its membership there (`user:device`
        for Element Call's state event, the MSC4195 hash for a current membership)."""
        return member_identity(self.ctx.user_id, self.ctx.device_id, self.own_member(room_id)[1])

    def member_id(self, room_id: str | None = None) -> str:
        """The member id of the bot's membership (what its keys name too)."""
        return self.own_member(room_id)[1] or member_identity(self.ctx.user_id, self.ctx.device_id)

    async def access(
        self, room_id: str, roles: Roles, name: str, slot: str | None = None
    ) -> SfuAccess:
        """A token for the bot's own SFU, in the LiveKit room of `slot` (default: that of the
        bot's membership; another slot's for a recording link, e.g. Element Call's members
        while the bot answers in MSC4143 current)."""
        slot = slot or self.own_member(room_id)[0]
        lk = self.ctx.settings().livekit
        if lk.api_secret:
            return mint_local_token(
                lk, livekit_room_alias(room_id, slot), self.identity(room_id), roles, name=name
            )
        home = await self.home_transport()
        if home is not None and home.url:
            try:
                return await self._homeserver_access(home.url, room_id, slot=slot)
            except SfuAuthError as e:
                if e.kind != "not_found" or not home.livekit_service_url:
                    raise
                # A homeserver that advertises `url` without an endpoint behind it, and the
                # deprecated service beside it: what Element Call ≤ 0.27 uses still works.
                self.log.warning("%s Using livekit_service_url instead.", e.message)
        service = await self.home_service(room_id)
        if not service:
            raise MediaError(
                "I don't know this call's LiveKit service: the homeserver advertises no "
                "MatrixRTC transport, livekit.service_url / livekit.api_secret are not set, "
                "and no call member's own service is in livekit.trusted_services."
            )
        client = await self.trust.client_for(service)
        return await self._service_access(service, room_id, client, slot)

    async def home_service_url(self) -> str:
        """The authorization service the bot's own transport names, "" when none."""
        home = await self.home_transport()
        return (home.livekit_service_url or "") if home else ""

    async def trusted_sfus(self) -> list[str]:
        """The services the bot's token may go to, and the SFUs by `url` it may connect to
        for the homeserver's token: its own and `livekit.trusted_services`."""
        home = await self.home_transport()
        return [*(await self.trust.urls()), *([home.url] if home and home.url else [])]

    async def home_key(self, room_id: str) -> str:
        """Where the bot's own participant is in this room's call: its SFU (rtc/member_fields
        `key`) and the slot of its membership (rtc/sfus `link_key`)."""
        home = await self.home_transport()
        sfu = (home.key or "") if home else await self.home_service(room_id)
        return link_key(sfu, self.own_member(room_id)[0])

    async def home_service(self, room_id: str) -> str:
        """The authorization service of the bot's own transport in this room's call."""
        own = await self.home_service_url()
        return own or await self.trust.members_service((await self.calls.room(room_id)).call())

    async def _homeserver_access(
        self, sfu_url: str, room_id: str, server_name: str | None = None, slot: str = ROOM_SLOT
    ) -> SfuAccess:
        # The bot's membership is a state event: its member id is `user:device`.
        return await homeserver_access(
            self.ctx.client,
            sfu_url,
            room_id,
            self.ctx.device_id,
            self.member_id(room_id),
            slot_id=slot,
            server_name=server_name,
            log=self.log,
        )

    async def foreign_access(self, service: str, room_id: str) -> SfuAccess:
        """A token for another SFU: only a trusted one (RecordingSfus checks first; this is
        the last gate). An SFU named by `url` gets its token from the bot's homeserver, with
        the server name of a member who publishes there; else from its service, through the
        guarded client. The bot's own SFU under another slot (rtc/sfus `link_key`): a token
        for that slot's LiveKit room, as for the bot's own participant."""
        sfu, slot = split_link_key(service)
        if sfu == split_link_key(await self.home_key(room_id))[0]:
            return await self.access(room_id, frozenset({"recorder"}), "rtcbot (recording)", slot)
        found = await self._transport_in_call(service, room_id)
        if found is not None and found.url and sfu == found.key:
            if trusted_service(found.url, await self.trusted_sfus()) is None:
                raise SfuAuthError("unauthorised", None, "That SFU is not a trusted one.")
            return await self._homeserver_access(found.url, room_id, found.server_name, slot)
        url = await self.trust.check(sfu)
        if url is None:
            raise SfuAuthError("unauthorised", None, "That service is not a trusted one.")
        return await self._service_access(url, room_id, self.trust.auth, slot)

    async def _transport_in_call(self, key: str, room_id: str) -> _Foreign | None:
        call = (await self.calls.room(room_id)).call()
        if call is None:
            return None
        transport = transports_by_key(call.members.values()).get(key)
        if transport is None:
            return None
        sfu, _slot = split_link_key(key)
        publishers = sorted(
            m.user_id for m in call.members.values() if sfu in {t.key for t in m.transports}
        )
        server = publishers[0].partition(":")[2] if publishers else None
        own = self.ctx.user_id.partition(":")[2]
        return _Foreign(transport, None if server in (None, own) else server)

    async def _service_access(
        self,
        service: str,
        room_id: str,
        client: AuthServiceClient | None = None,
        slot: str = ROOM_SLOT,
    ) -> SfuAccess:
        """A token from that MatrixRTC authorization service, for the bot's membership."""
        openid = await self.ctx.client.api.request(
            Method.POST,
            ApiPath.v3.user[self.ctx.user_id].openid.request_token,
            {},
            sensitive=True,
        )
        # The bot's membership is a state event: /sfu/get gives its `user:device` identity;
        # only /get_token knows other slots.
        return await (client or self._auth).get_access(
            service,
            room_id,
            openid,
            self.ctx.user_id,
            self.ctx.device_id,
            self.member_id(room_id),
            slot,
            prefer="sfu_get" if slot == ROOM_SLOT else "get_token",
        )

    async def update_grants(self, access: SfuAccess, roles: Roles, name: str) -> None:
        await update_live_grants(
            self.ctx.settings().livekit,
            access.room,
            access.identity,
            roles,
            name,
            session=self.ctx.http,
        )
