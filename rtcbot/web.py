"""The plugin's web endpoints: the MatrixRTC authorization service and LiveKit's webhooks."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web
from livekit import api

from .auth_requests import RequestError, read_limited
from .auth_service import AuthService, Delegate
from .context import BotContext
from .crypto_status import crypto_unavailable_reason
from .matrix.room_members import RoomMembers, joined_members_of
from .tasks import plugin_tasks

StatusSource = Callable[[], list[dict[str, Any]]]
# (event, LiveKit room, identity, participant sid) of participant_joined / _left /
# _connection_aborted: what the delegated leaves listen to.
ParticipantListener = Callable[[str, str, str, str], None]
PARTICIPANT_EVENTS = ("participant_joined", "participant_left", "participant_connection_aborted")

# LiveKit's webhook bodies are a few KiB; anything near this is not from LiveKit.
MAX_WEBHOOK_BYTES = 256 * 1024


class WebEndpoints:
    def __init__(
        self,
        ctx: BotContext,
        rooms: StatusSource,
        recordings: StatusSource,
        *,
        on_room_finished: Callable[[str], Coroutine[Any, Any, Any]] | None = None,
        task_count: Callable[[], int] = lambda: len(plugin_tasks()),
        delegate: Delegate | None = None,
        on_participant: ParticipantListener | None = None,
    ) -> None:
        self.ctx = ctx
        self.rooms = rooms
        self.recordings = recordings
        # A LiveKit room is finished (webhook): the media roles end what they still do there.
        self.on_room_finished = on_room_finished
        self.task_count = task_count
        self.on_participant = on_participant
        self.log = ctx.logger("web")
        self.auth = AuthService(
            lambda: ctx.settings().auth_service,
            ctx.http,
            ctx.logger("auth_service"),
            own_server=ctx.user_id.partition(":")[2],
            room_members=RoomMembers(joined_members_of(ctx.client)),
            delegate=delegate,
        )

    def mount(self, app: web.UrlDispatcher) -> None:
        for method, path, handler in self.auth.routes():
            app.add_route(method, path, handler)
        app.add_route("POST", "/sfu_webhook", self.sfu_webhook)
        app.add_route("GET", "/health", self.health)
        app.add_route("GET", "/status", self.status)
        app.add_route("GET", "/metrics", self.metrics)

    async def _probe(self, url: str) -> dict[str, object]:
        try:
            async with asyncio.timeout(3), self.ctx.http.get(url) as resp:
                return {"reachable": resp.status < 500, "http_status": resp.status}
        except Exception as e:
            return {"reachable": False, "error": type(e).__name__}

    async def health(self, _request: web.Request) -> web.Response:
        """Homeserver and SFU reachable, and the bot's E2EE on? 200 when all are, else 503."""
        hs = await self._probe(str(self.ctx.client.api.base_url / "_matrix/client/versions"))
        result: dict[str, object] = {"homeserver": hs}
        settings = self.ctx.settings()
        lk_url = settings.livekit.url or settings.auth_service.livekit_url
        if lk_url:
            http_url = lk_url.replace("wss://", "https://").replace("ws://", "http://")
            result["sfu"] = await self._probe(http_url.rstrip("/") + "/")
        ok = all(bool(v.get("reachable")) for v in result.values() if isinstance(v, dict))
        # Without crypto the bot is silent in encrypted rooms (encryption_guard.py): say why.
        no_e2ee = crypto_unavailable_reason(self.ctx.client)
        result["e2ee"] = (
            {"available": True} if no_e2ee is None else {"available": False, "reason": no_e2ee}
        )
        ok = ok and no_e2ee is None
        result["status"] = "ok" if ok else "degraded"
        return web.json_response(result, status=200 if ok else 503)

    async def status(self, request: web.Request) -> web.Response:
        token = self.ctx.settings().web.status_token
        if not token:
            return web.json_response(
                {"error": "/status is disabled: set web.status_token in the config"}, status=403
            )
        # surrogateescape: aiohttp hands over undecodable header bytes as surrogates.
        given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, f"Bearer {token}".encode()):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        return web.json_response(
            {
                "bot": self.ctx.user_id,
                "rooms": self.rooms(),
                "recordings": self.recordings(),
                # Tasks of the plugin running now (the same count `stop()` logs as left over).
                "tasks": self.task_count(),
            }
        )

    async def metrics(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=self.ctx.metrics.render(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    async def sfu_webhook(self, request: web.Request) -> web.Response:
        """LiveKit's room/participant events, signed with the API key: verified, counted; a
        finished room ends the bot's media roles there, participants coming and going drive
        the delegated leaves."""
        settings = self.ctx.settings().auth_service
        if not settings.api_secret:
            return web.json_response({"errcode": "M_NOT_FOUND"}, status=404)
        try:
            # Bytes, not request.text(): a bogus charset in Content-Type must not matter.
            body = (await read_limited(request, MAX_WEBHOOK_BYTES)).decode("utf-8")
        except RequestError as e:
            return web.json_response({"errcode": e.errcode}, status=e.status)
        except UnicodeDecodeError:
            return web.json_response({"errcode": "M_NOT_JSON"}, status=400)
        try:
            receiver = api.WebhookReceiver(
                api.TokenVerifier(settings.api_key, settings.api_secret)
            )
            event = receiver.receive(body, request.headers.get("Authorization", ""))
        except Exception:
            return web.json_response({"errcode": "M_UNAUTHORIZED"}, status=401)
        self.log.debug("LiveKit webhook: %s in %s", event.event, event.room.name)
        self.ctx.metrics.sfu_webhooks.labels(event.event or "unknown").inc()
        if event.event == "room_finished" and self.on_room_finished and event.room.name:
            # Answered at once; LiveKit retries slow webhooks.
            self.ctx.tasks.spawn(self.on_room_finished(event.room.name), "sfu-room-finished")
        participant = event.participant
        if event.event in PARTICIPANT_EVENTS and self.on_participant and participant.identity:
            self.log.debug(
                "LiveKit webhook: %s %s (%s)", event.event, participant.identity, participant.sid
            )
            self.on_participant(
                event.event, event.room.name, participant.identity, participant.sid
            )
        return web.json_response({})
