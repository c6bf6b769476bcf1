"""The plugin's web endpoints: the MatrixRTC authorization service and LiveKit's webhooks.

Anonymous callers reach all of this, so nothing here lets them drive the bot's connections:
`/health` probes at most once per HEALTH_CACHE_S whoever asks; `/metrics` needs a bearer
token (`web.metrics_token`) or, without one, an unproxied request from loopback (a local
scraper); a replayed webhook (the same verified body) is answered and ignored.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web
from livekit import api

from ..context import BotContext
from ..matrix.crypto_status import crypto_unavailable_reason
from ..matrix.room_members import RoomMembers, joined_members_of
from ..tasks import plugin_tasks
from .homeserver_tokens import HomeserverTokens
from .requests import RequestError, read_limited
from .service import AuthService, Delegate, Handler

StatusSource = Callable[[], list[dict[str, Any]]]
# (event, LiveKit room, identity, participant sid) of participant_joined / _left /
# _connection_aborted: what the delegated leaves listen to.
ParticipantListener = Callable[[str, str, str, str], None]
PARTICIPANT_EVENTS = ("participant_joined", "participant_left", "participant_connection_aborted")

# LiveKit's webhook bodies are a few KiB; anything near this is not from LiveKit.
MAX_WEBHOOK_BYTES = 256 * 1024
# A webhook's signature is valid until its JWT expires (LiveKit: minutes) plus the SDK's
# leeway: a body seen once within this long is a replay.
WEBHOOK_REPLAY_WINDOW_S = 15 * 60
MAX_SEEN_WEBHOOKS = 20_000
HEALTH_CACHE_S = 5.0
PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


def is_loopback(peer: str | None) -> bool:
    try:
        return peer is not None and ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return False


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
        own_url: str = "",
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
            None,  # LiveKit's API on a session of its own, never the Matrix client's
            ctx.logger("auth_service"),
            own_server=ctx.user_id.partition(":")[2],
            own_user_id=ctx.user_id,
            own_homeserver_url=str(ctx.client.api.base_url),
            own_service_url=own_url,
            room_members=RoomMembers(joined_members_of(ctx.client)),
            delegate=delegate,
        )
        self.homeserver_tokens = HomeserverTokens(self.auth, ctx.user_id.partition(":")[2])
        self._health: tuple[float, int, dict[str, object]] | None = None
        self._health_lock = asyncio.Lock()
        self._seen_webhooks: dict[str, float] = {}  # sha256 of a verified body → until when

    async def close(self) -> None:
        await self.auth.close()

    def mount(self, app: web.UrlDispatcher) -> None:
        for method, path, handler in self.auth.routes():
            counted = method == "POST" and path != "/sfu_webhook"
            app.add_route(
                method, path, self._counted(path.strip("/"), handler) if counted else handler
            )
        for method, path, handler in self.homeserver_tokens.routes():
            counted = method == "POST"
            app.add_route(
                method, path, self._counted("homeserver", handler) if counted else handler
            )
        app.add_route("POST", "/sfu_webhook", self.sfu_webhook)
        app.add_route("GET", "/health", self.health)
        app.add_route("GET", "/status", self.status)
        app.add_route("GET", "/metrics", self.metrics)

    def _counted(self, endpoint: str, handler: Handler) -> Handler:
        """The token endpoints' answers by status (rtcbot_auth_requests): what an operator
        alerts on when the service starts refusing or failing."""
        requests = self.ctx.metrics.auth_requests

        async def counted(request: web.Request) -> web.StreamResponse:
            try:
                response = await handler(request)
            except web.HTTPException as e:
                requests.labels(endpoint, str(e.status)).inc()
                raise
            except Exception:
                requests.labels(endpoint, "500").inc()
                raise
            requests.labels(endpoint, str(response.status)).inc()
            return response

        return counted

    async def _probe(self, url: str) -> dict[str, object]:
        try:
            async with asyncio.timeout(3), self.ctx.http.get(url) as resp:
                return {"reachable": resp.status < 500, "http_status": resp.status}
        except Exception as e:
            return {"reachable": False, "error": type(e).__name__}

    async def health(self, _request: web.Request) -> web.Response:
        """Homeserver and SFU reachable, and the bot's E2EE on? 200 when all are, else 503.
        The probes are cached a few seconds (anonymous callers must not make the bot probe per
        request); the E2EE state is read fresh, it costs nothing."""
        async with self._health_lock:  # callers arriving meanwhile share one probe
            cached = self._health
            if cached is None or time.monotonic() - cached[0] > HEALTH_CACHE_S:
                status, probes = await self._check_health()
                cached = self._health = (time.monotonic(), status, probes)
        result = dict(cached[2])
        # Without crypto the bot is silent in encrypted rooms (encryption_guard.py): say why.
        no_e2ee = crypto_unavailable_reason(self.ctx.client)
        result["e2ee"] = (
            {"available": True} if no_e2ee is None else {"available": False, "reason": no_e2ee}
        )
        ok = cached[1] == 200 and no_e2ee is None
        result["status"] = "ok" if ok else "degraded"
        return web.json_response(result, status=200 if ok else 503)

    async def _check_health(self) -> tuple[int, dict[str, object]]:
        hs = await self._probe(str(self.ctx.client.api.base_url / "_matrix/client/versions"))
        result: dict[str, object] = {"homeserver": hs}
        settings = self.ctx.settings()
        lk_url = settings.livekit.url or settings.auth_service.livekit_url
        if lk_url:
            http_url = lk_url.replace("wss://", "https://").replace("ws://", "http://")
            result["sfu"] = await self._probe(http_url.rstrip("/") + "/")
        ok = all(bool(v.get("reachable")) for v in result.values() if isinstance(v, dict))
        return (200 if ok else 503), result

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

    async def metrics(self, request: web.Request) -> web.Response:
        token = self.ctx.settings().web.metrics_token
        if token:
            given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(given, f"Bearer {token}".encode()):
                return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        elif not is_loopback(request.remote) or any(h in request.headers for h in PROXY_HEADERS):
            # Behind a reverse proxy every request comes from loopback: a forwarded one is not
            # a local scraper.
            return web.json_response(
                {"error": "/metrics is local only: set web.metrics_token to scrape it remotely"},
                status=403,
            )
        return web.Response(
            body=self.ctx.metrics.render(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    def _replayed(self, body: str) -> bool:
        """Seen this (verified) body before? LiveKit's events carry a unique id and a time,
        so the same body twice is the same event. Remembered for WEBHOOK_REPLAY_WINDOW_S."""
        now = time.monotonic()
        seen = self._seen_webhooks
        while seen and next(iter(seen.values())) <= now:  # in order of expiry: oldest first
            del seen[next(iter(seen))]
        digest = hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()
        if digest in seen:
            return True
        while len(seen) >= MAX_SEEN_WEBHOOKS:
            del seen[next(iter(seen))]
        seen[digest] = now + WEBHOOK_REPLAY_WINDOW_S
        return False

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
        if self._replayed(body):
            self.log.info("LiveKit webhook: a replay of one already handled, ignored")
            return web.json_response({})
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
