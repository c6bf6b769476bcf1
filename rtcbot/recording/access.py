"""How the bot gets into a call's LiveKit room: its identity and its token.

Minted locally with the least privilege of the roles held when a LiveKit API secret is
configured (a role added later widens the live participant's permissions, one that ends
narrows them), else from the MatrixRTC authorization service (OpenID → /sfu/get for the
bot's state-event membership, /get_token if that is gone), a trusted one only
(recording/trusted_services.py).
"""

from __future__ import annotations

from collections.abc import Callable

from mautrix.api import Method
from mautrix.api import Path as ApiPath

from ..context import BotContext
from ..media.tokens import (
    AuthServiceClient,
    Roles,
    SfuAccess,
    SfuAuthError,
    mint_local_token,
    update_live_grants,
)
from ..ports import CallDirectory, TransportUrl
from ..rtc.identity import livekit_room_alias, member_identity
from .errors import MediaError
from .trusted_services import TrustedServices


class MediaAccess:
    def __init__(
        self,
        ctx: BotContext,
        calls: CallDirectory,
        transport_url: TransportUrl,
        livekit_url_of: Callable[[str], str | None],
    ) -> None:
        self.ctx = ctx
        self.calls = calls
        self.transport_url = transport_url
        self.log = ctx.logger("media")
        # The LiveKit URL the bot's participant in a room is connected to, if it is.
        self.livekit_url_of = livekit_url_of
        self._auth = AuthServiceClient(ctx.http, log=self.log.getChild("auth_client"))
        # Where the bot's token may go; other SFUs' services through their own guarded pool.
        self.trust = TrustedServices(ctx, transport_url, self.log.getChild("other_auth_client"))

    async def close(self) -> None:
        await self.trust.close()

    def identity(self) -> str:
        """The bot's LiveKit identity in every call: that of its (state-event) membership."""
        return member_identity(self.ctx.user_id, self.ctx.device_id)

    async def access(self, room_id: str, roles: Roles, name: str) -> SfuAccess:
        lk = self.ctx.settings().livekit
        if lk.api_secret:
            return mint_local_token(
                lk, livekit_room_alias(room_id), self.identity(), roles, name=name
            )
        service = await self.home_service(room_id)
        if not service:
            raise MediaError(
                "I don't know this call's LiveKit service: the homeserver advertises no "
                "MatrixRTC transport, livekit.service_url / livekit.api_secret are not set, "
                "and no call member's own service is in livekit.trusted_services."
            )
        return await self._service_access(service, room_id, await self.trust.client_for(service))

    async def home_service(self, room_id: str) -> str:
        """The authorization service of the bot's own transport in this room's call."""
        own = await self.transport_url()
        return own or await self.trust.members_service((await self.calls.room(room_id)).call())

    async def foreign_access(self, service: str, room_id: str) -> SfuAccess:
        """A token from another SFU's service: only a trusted one, through the guarded
        client (RecordingSfus checks first; this is the last gate before the token leaves)."""
        url = await self.trust.check(service)
        if url is None:
            raise SfuAuthError("unauthorised", None, "That service is not a trusted one.")
        return await self._service_access(url, room_id, self.trust.auth)

    async def _service_access(
        self, service: str, room_id: str, client: AuthServiceClient | None = None
    ) -> SfuAccess:
        """A token from that MatrixRTC authorization service, for the bot's membership."""
        openid = await self.ctx.client.api.request(
            Method.POST,
            ApiPath.v3.user[self.ctx.user_id].openid.request_token,
            {},
            sensitive=True,
        )
        # The bot's membership is a state event: /sfu/get gives its `user:device` identity.
        return await (client or self._auth).get_access(
            service,
            room_id,
            openid,
            self.ctx.user_id,
            self.ctx.device_id,
            self.identity(),
            prefer="sfu_get",
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
