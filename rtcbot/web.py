"""The plugin's web endpoints: the MatrixRTC authorization service and LiveKit's webhooks."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web
from livekit import api

from .auth_service import AuthService

if TYPE_CHECKING:
    from .bot import RtcBot


class WebEndpoints:
    def __init__(self, bot: RtcBot) -> None:
        self.bot = bot
        self.log = logging.getLogger("rtcbot.web")
        self.auth = AuthService(
            lambda: bot.settings.auth_service, bot.http, logging.getLogger("rtcbot.auth_service")
        )

    def mount(self, app: web.UrlDispatcher) -> None:
        for method, path, handler in self.auth.routes():
            app.add_route(method, path, handler)
        app.add_route("POST", "/sfu_webhook", self.sfu_webhook)

    async def sfu_webhook(self, request: web.Request) -> web.Response:
        """LiveKit's room/participant events, signed with the API key (verified, then logged)."""
        settings = self.bot.settings.auth_service
        if not settings.api_secret:
            return web.json_response({"errcode": "M_NOT_FOUND"}, status=404)
        body = await request.text()
        try:
            receiver = api.WebhookReceiver(
                api.TokenVerifier(settings.api_key, settings.api_secret)
            )
            event = receiver.receive(body, request.headers.get("Authorization", ""))
        except Exception:
            return web.json_response({"errcode": "M_UNAUTHORIZED"}, status=401)
        self.log.debug("LiveKit webhook: %s in %s", event.event, event.room.name)
        return web.json_response({})
