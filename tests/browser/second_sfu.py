"""A second, independent MatrixRTC transport for multi-SFU calls (each member publishes on its
own transport, everyone subscribes on every SFU where someone publishes; in real life: two
homeservers, each with its own SFU and authorization service).

The fixture `second_transport` (session) starts, in the test namespace:
- a second LiveKit server (rtcbot_stack/extra_sfu.py: the stack's binary on free ports, its own
  API key and secret, the same node address; webhooks to its own authorization service);
- its authorization service: a second instance of rtcbot in the stack's maubot, with its own bot
  user and client (no device, so no crypto: the simplest client that works), configured with
  that LiveKit, `auth_service.enabled` and `rooms_without_bot: any_user` so it serves rooms its
  bot is not in (as a lone lk-jwt-service would). Its bot accepts no invite, never starts a
  call and has its own command word: it never joins or speaks in a test room.

It yields a `SecondTransport` (service_url, livekit_url, api_key, api_secret, …); give
`service_url` to `element_call(..., livekit_service_url=…)` to make a page publish there.
`stack_transport(stack)` describes the stack's own transport the same way, so a test can ask
both SFUs the same questions (`participants`, `publishers`).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from livekit import api

from rtcbot.rtc.identity import livekit_room_alias
from rtcbot_stack import http
from rtcbot_stack.extra_sfu import SfuKeys, extra_livekit
from rtcbot_stack.livekit import LiveKit
from rtcbot_stack.stack import INSTANCE_ID, PLUGIN_ID, Stack
from rtcbot_stack.synapse import SERVER_NAME

SECOND_INSTANCE_ID = "rtcbot-sfu2"
# A pattern no inviter matches: the second bot declines every invite (calls/invites.py).
NOBODY = "@nobody-invites-the-second-bot:invalid"


@dataclass(frozen=True)
class MatrixRtcTransport:
    """A MatrixRTC LiveKit transport: the authorization service clients put in their
    membership, and the SFU behind it (with the API key to ask it who is there)."""

    name: str
    service_url: str  # livekit_service_url: what a membership names as its transport
    livekit_url: str  # ws:// of the SFU
    api_key: str
    api_secret: str = field(repr=False)

    async def participants(self, room_id: str) -> list[api.ParticipantInfo]:
        """RoomService.ListParticipants of the call's LiveKit room (none if no such room)."""
        lk = api.LiveKitAPI(self.livekit_url, self.api_key, self.api_secret)
        try:
            req = api.ListParticipantsRequest(room=livekit_room_alias(room_id))
            resp = await lk.room.list_participants(req)
        except api.TwirpError as e:
            if e.code == api.TwirpErrorCode.NOT_FOUND:
                return []
            raise
        finally:
            await lk.aclose()
        return list(resp.participants)

    async def publishers(self, room_id: str) -> dict[str, list[str]]:
        """identity → kinds of the tracks it publishes here ("audio", "video"), for every
        participant that publishes (subscribe-only connections are left out)."""
        kinds = {api.TrackType.AUDIO: "audio", api.TrackType.VIDEO: "video"}
        return {
            p.identity: sorted(kinds.get(t.type, "data") for t in p.tracks)
            for p in await self.participants(room_id)
            if p.tracks
        }

    async def identities(self, room_id: str) -> dict[str, str]:
        """Participant sid and track sid → identity (sids are per SFU)."""
        out: dict[str, str] = {}
        for p in await self.participants(room_id):
            out[p.sid] = p.identity
            for t in p.tracks:
                out[t.sid] = p.identity
        return out


@dataclass(frozen=True)
class SecondTransport(MatrixRtcTransport):
    bot_user_id: str = ""  # the second rtcbot's user (never in a test room)
    instance_id: str = SECOND_INSTANCE_ID
    livekit_log: Path | None = None
    timings: dict[str, float] = field(default_factory=dict, compare=False)


def stack_transport(stack: Stack) -> MatrixRtcTransport:
    """The stack's own transport (what Synapse's rtc/transports advertises)."""
    return MatrixRtcTransport(
        name="sfu1",
        service_url=stack.auth_service_url,
        livekit_url=stack.livekit.url,
        api_key=stack.secrets["livekit_api_key"],
        api_secret=stack.secrets["livekit_api_secret"],
    )


# The extra transports running now, for the browser pages' identity resolver (conftest.py).
_running: list[MatrixRtcTransport] = []


def extra_transports() -> list[MatrixRtcTransport]:
    return list(_running)


def second_instance_config(
    stack: Stack, livekit: LiveKit, keys: SfuKeys, service_url: str
) -> dict[str, Any]:
    lk = {"url": livekit.url, "api_key": keys.api_key, "api_secret": keys.api_secret}
    return {
        # Its own command word, no notices, no invites, no call of its own: even if it were
        # put in a room, it would not answer the first bot's commands or join a call.
        "command": "sfu2",
        "invites": {"allowed_users": [NOBODY], "allowed_servers": []},
        "notices": {"default_level": "off"},
        "calls": {"bot_may_start": False},
        "livekit": {**lk, "service_url": service_url},
        "auth_service": {
            "enabled": True,
            "livekit_url": livekit.url,
            "api_key": keys.api_key,
            "api_secret": keys.api_secret,
            "full_access_homeservers": ["*"],
            "homeserver_urls": {SERVER_NAME: stack.synapse.url},
            "rooms_without_bot": "any_user",
        },
    }


def _delete_quietly(stack: Stack, path: str) -> None:
    try:
        stack.maubot.api("DELETE", path)
    except http.HttpError as e:
        if e.status != 404:
            print(f"[second-sfu] DELETE {path}: {e}")


@pytest.fixture(scope="session")
def second_transport(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecondTransport]:
    """A second LiveKit + a second rtcbot as its authorization service (see the module's
    doc); everything is removed at the end of the session."""
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    keys = SfuKeys.new("rtcbot-sfu2")
    service_url = f"{stack.maubot.url}/_matrix/maubot/plugin/{SECOND_INSTANCE_ID}"
    data_dir = Path(tmp_path_factory.mktemp("livekit2"))
    livekit = extra_livekit(
        data_dir,
        stack.livekit.opts.node_ip,
        keys,
        webhook_urls=(f"{service_url}/sfu_webhook",),
    )
    user_id: str | None = None
    instance = False
    try:
        timings["livekit"] = livekit.start()
        localpart = f"rtcbot_sfu2_{secrets.token_hex(3)}"
        password = secrets.token_urlsafe(12)
        stack.synapse.register(localpart, password)
        login = stack.synapse.login(localpart, password)
        user_id = str(login["user_id"])
        # No device id: maubot gives the client no crypto (the simplest client that works;
        # the service needs none, and the bot never joins a room).
        stack.maubot.put_client(user_id, login["access_token"], "")
        cfg = second_instance_config(stack, livekit, keys, service_url)
        instance = True  # a failed PUT may still have created it
        stack.maubot.put_instance(SECOND_INSTANCE_ID, PLUGIN_ID, user_id, json.dumps(cfg))
        timings["instance"] = http.wait_until_up(f"{service_url}/healthz", 60)
        transport = SecondTransport(
            name="sfu2",
            service_url=service_url,
            livekit_url=livekit.url,
            api_key=keys.api_key,
            api_secret=keys.api_secret,
            bot_user_id=user_id,
            livekit_log=data_dir / "livekit.log",
            timings=timings,
        )
        timings["total"] = time.monotonic() - t0
        print(
            f"[second-sfu] {transport.name}: LiveKit {transport.livekit_url} "
            f"(started in {timings['livekit']:.1f} s), authorization service {service_url} "
            f"(bot {user_id}, up in {timings['instance']:.1f} s); {timings['total']:.1f} s in all"
        )
        _running.append(transport)
        # The stack's bot records people on this SFU only when told to trust it.
        stack.trusted_services.append(service_url)
        stack.maubot.put_instance(
            INSTANCE_ID, PLUGIN_ID, stack.bot["user_id"], json.dumps(stack.plugin_config())
        )
        try:
            yield transport
        finally:
            _running.remove(transport)
            stack.trusted_services.remove(service_url)
            stack.maubot.put_instance(
                INSTANCE_ID, PLUGIN_ID, stack.bot["user_id"], json.dumps(stack.plugin_config())
            )
    finally:
        if instance:
            _delete_quietly(stack, f"/instance/{SECOND_INSTANCE_ID}")
        if user_id:
            _delete_quietly(stack, f"/client/{user_id}")
        livekit.stop()
