"""Synapse with SQLite and the MatrixRTC features on (docs/DEPLOYMENT.md, Synapse settings)."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import http
from .paths import SYNAPSE_PYTHON
from .process import Child

SERVER_NAME = "localhost"

_UNLIMITED = {"per_second": 10000, "burst_count": 10000}

LOG_CONFIG = {
    "version": 1,
    "formatters": {"f": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "f"}},
    "root": {"level": "WARNING", "handlers": ["console"]},
    "disable_existing_loggers": False,
}


@dataclass
class SynapseOptions:
    port: int
    shared_secret: str
    # MSC4140: max_event_delay_duration. None switches delayed events off (second config).
    max_delay: str | None = "24h"
    # The MatrixRTC authorization service URL advertised as transport / rtc_foci.
    livekit_service_url: str | None = None
    livekit_sfu_url: str | None = None
    # `url` in the advertised transport (Synapse ≥ 1.161), beside or instead of the service.
    advertise_sfu_url: bool = False
    # MSC4512: application service registrations (files) whose proxy Synapse serves.
    appservice_files: tuple[str, ...] = ()
    # MSC4140's per-user cap of pending delayed events (Synapse's default: 100).
    max_delayed_per_user: int | None = None


def homeserver_config(data_dir: Path, opts: SynapseOptions) -> dict[str, Any]:
    base = f"http://127.0.0.1:{opts.port}"
    cfg: dict[str, Any] = {
        "server_name": SERVER_NAME,
        "public_baseurl": f"{base}/",  # also switches on /.well-known/matrix/client
        "report_stats": False,
        "listeners": [
            {
                "port": opts.port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                # openid: the federation userinfo endpoint the authorization service verifies with
                "resources": [{"names": ["client", "openid"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(data_dir / "homeserver.db")}},
        "media_store_path": str(data_dir / "media"),
        "signing_key_path": str(data_dir / "signing.key"),
        "log_config": str(data_dir / "log.yaml"),
        "pid_file": str(data_dir / "homeserver.pid"),
        "registration_shared_secret": opts.shared_secret,
        "macaroon_secret_key": hashlib.sha256(b"mac" + opts.shared_secret.encode()).hexdigest(),
        "form_secret": hashlib.sha256(b"form" + opts.shared_secret.encode()).hexdigest(),
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "bcrypt_rounds": 4,
        "presence": {"enabled": False},
        "caches": {"sync_response_cache_duration": 0},
        "enable_registration": False,
        "experimental_features": {
            "msc4143_enabled": True,
            "msc4354_enabled": True,
            "msc4222_enabled": True,
        },
    }
    if opts.max_delay:
        cfg["max_event_delay_duration"] = opts.max_delay
    transport: dict[str, Any] = {"type": "livekit"}
    if opts.advertise_sfu_url and opts.livekit_sfu_url:
        transport["url"] = opts.livekit_sfu_url
    if opts.livekit_service_url:
        transport["livekit_service_url"] = opts.livekit_service_url
    if len(transport) > 1:
        cfg["matrix_rtc"] = {"transports": [transport]}
        cfg["extra_well_known_client_content"] = {"org.matrix.msc4143.rtc_foci": [transport]}
    if opts.max_delayed_per_user is not None:
        cfg["experimental_features"]["msc4140_max_delayed_events_per_user"] = (
            opts.max_delayed_per_user
        )
    if opts.appservice_files:
        cfg["app_service_config_files"] = list(opts.appservice_files)
        cfg["experimental_features"]["msc4512_enabled"] = True
    for key in (
        "rc_message",
        "rc_registration",
        "rc_joins_per_room",
        "rc_room_creation",
        "rc_delayed_event_mgmt",
        "rc_profile",
        "rc_user_directory",
        "rc_key_requests",
        "rc_media_create",
        "rc_admin_redaction",
        "rc_reports",
        "rc_3pid_validation",
    ):
        cfg[key] = _UNLIMITED
    cfg["rc_login"] = {k: _UNLIMITED for k in ("address", "account", "failed_attempts")}
    cfg["rc_joins"] = {"local": _UNLIMITED, "remote": _UNLIMITED}
    cfg["rc_invites"] = {k: _UNLIMITED for k in ("per_room", "per_user", "per_issuer")}
    cfg["rc_presence"] = {"per_user": _UNLIMITED}
    return cfg


class Synapse:
    def __init__(self, data_dir: Path, opts: SynapseOptions) -> None:
        self.data_dir = data_dir
        self.opts = opts
        self.url = f"http://127.0.0.1:{opts.port}"
        self.child = Child(
            "synapse",
            [str(SYNAPSE_PYTHON), "-m", "synapse.app.homeserver", "-c", "homeserver.yaml"],
            data_dir / "synapse.log",
            data_dir,
        )

    def start(self, timeout: float = 60) -> float:
        if not SYNAPSE_PYTHON.exists():
            raise RuntimeError(f"Synapse venv missing ({SYNAPSE_PYTHON}); run `make setup`")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # JSON is YAML: no YAML library needed in the stack tooling.
        cfg = homeserver_config(self.data_dir, self.opts)
        (self.data_dir / "homeserver.yaml").write_text(json.dumps(cfg, indent=1))
        (self.data_dir / "log.yaml").write_text(json.dumps(LOG_CONFIG))
        self.child.start()
        try:
            return http.wait_until_up(f"{self.url}/health", timeout, self.child.alive)
        except Exception as e:
            raise RuntimeError(f"Synapse did not start: {e}\n{self.child.log_tail()}") from e

    def stop(self) -> None:
        self.child.stop()

    # -- users -------------------------------------------------------------------------------
    def register(self, username: str, password: str, admin: bool = False) -> dict[str, Any]:
        """Create a user with the shared secret; log in instead if it exists already."""
        url = f"{self.url}/_synapse/admin/v1/register"
        nonce = http.request("GET", url)["nonce"]
        msg = b"\x00".join(
            [
                nonce.encode(),
                username.encode(),
                password.encode(),
                b"admin" if admin else b"notadmin",
            ]
        )
        mac = hmac.new(self.opts.shared_secret.encode(), msg, hashlib.sha1).hexdigest()
        body = {"nonce": nonce, "username": username, "password": password, "admin": admin}
        try:
            return dict(http.request("POST", url, {**body, "mac": mac}))
        except http.HttpError as e:
            if e.json().get("errcode") != "M_USER_IN_USE":
                raise
        return self.login(username, password)

    def login(self, username: str, password: str, device_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": username},
            "password": password,
        }
        if device_id:
            body["device_id"] = device_id
        return dict(http.request("POST", f"{self.url}/_matrix/client/v3/login", body))

    def api(self, method: str, path: str, token: str, body: Any = None) -> Any:
        return http.request(method, f"{self.url}/_matrix/client/v3/{path}", body, token=token)
