"""A maubot server with the rtcbot plugin uploaded and an instance configured for the stack."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import http
from .paths import MAUBOT_PYTHON
from .process import Child

API = "/_matrix/maubot/v1"


@dataclass
class MaubotOptions:
    port: int
    admin_user: str
    admin_password: str
    homeserver_url: str
    shared_secret: str
    # Encrypts the Olm/Megolm pickles in the crypto store: fixed for the life of the store
    # (a new value makes every stored session unreadable).
    crypto_pickle_key: str = "mau.crypto"


def maubot_config(data_dir: Path, opts: MaubotOptions) -> dict[str, Any]:
    return {
        "database": f"sqlite:{data_dir / 'maubot.db'}",
        # The bot's E2EE store lives in maubot's own DB (tables crypto_*).
        "crypto_database": "default",
        "crypto_db_pickle_key": opts.crypto_pickle_key,
        "plugin_directories": {
            "upload": str(data_dir / "plugins"),
            "load": [str(data_dir / "plugins")],
            "trash": "delete",
        },
        "plugin_databases": {"sqlite": str(data_dir / "plugin-dbs"), "postgres": None},
        "server": {
            "hostname": "127.0.0.1",
            "port": opts.port,
            "public_url": f"http://127.0.0.1:{opts.port}",
            "ui_base_path": "/_matrix/maubot",
            "plugin_base_path": "/_matrix/maubot/plugin/",
            "override_resource_path": False,
            "unshared_secret": "generate",
        },
        "homeservers": {"localhost": {"url": opts.homeserver_url, "secret": opts.shared_secret}},
        "admins": {"root": "", opts.admin_user: opts.admin_password},
        "api_features": {
            k: True
            for k in (
                "login plugin plugin_upload instance instance_database client client_proxy "
                "client_auth dev_open log"
            ).split()
        },
        "logging": {
            "version": 1,
            "formatters": {
                "normal": {"format": "[%(asctime)s] [%(levelname)s@%(name)s] %(message)s"}
            },
            "handlers": {
                "console": {"class": "logging.StreamHandler", "formatter": "normal"},
            },
            "loggers": {
                "maubot": {"level": "DEBUG"},
                "rtcbot": {"level": "DEBUG"},
                "mau": {"level": "DEBUG"},
                "aiohttp": {"level": "INFO"},
            },
            "root": {"level": "INFO", "handlers": ["console"]},
        },
    }


class Maubot:
    def __init__(self, data_dir: Path, opts: MaubotOptions) -> None:
        self.data_dir = data_dir
        self.opts = opts
        self.url = f"http://127.0.0.1:{opts.port}"
        self.token: str | None = None
        self.child = Child(
            "maubot",
            [str(MAUBOT_PYTHON), "-m", "maubot", "-c", "config.yaml"],
            data_dir / "maubot.log",
            data_dir,
        )

    def start(self, timeout: float = 60, cancelled: Callable[[], bool] | None = None) -> float:
        """Start the server and log in to its API; `cancelled` (e.g. Ctrl-C seen) ends the
        wait for it early with an error."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "plugins").mkdir(exist_ok=True)
        (self.data_dir / "plugin-dbs").mkdir(exist_ok=True)
        cfg = maubot_config(self.data_dir, self.opts)
        (self.data_dir / "config.yaml").write_text(json.dumps(cfg, indent=1))
        # A fresh Child each time, so a stopped/killed server can be started again.
        self.child = Child(
            "maubot", self.child.argv, self.child.log_path, self.child.cwd, self.child.env
        )
        self.child.start()
        try:
            took = http.wait_until_up(
                f"{self.url}{API}/features",
                timeout,
                lambda: self.child.alive() and not (cancelled is not None and cancelled()),
            )
        except Exception as e:
            raise RuntimeError(f"maubot did not start: {e}\n{self.child.log_tail()}") from e
        self.login()
        return took

    def stop(self) -> None:
        self.child.stop()

    def kill(self) -> None:
        self.child.kill()

    # -- management API ----------------------------------------------------------------------
    def login(self) -> None:
        body = {"username": self.opts.admin_user, "password": self.opts.admin_password}
        self.token = http.request("POST", f"{self.url}{API}/auth/login", body)["token"]

    def api(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Any:
        ctype = "application/zip" if raw is not None else "application/json"
        return http.request(
            method, f"{self.url}{API}{path}", body, token=self.token, raw=raw, content_type=ctype
        )

    def upload_plugin(self, mbp: Path) -> dict[str, Any]:
        return dict(self.api("POST", "/plugins/upload?allow_override=true", raw=mbp.read_bytes()))

    def put_client(self, user_id: str, access_token: str, device_id: str) -> dict[str, Any]:
        body = {
            "homeserver": self.opts.homeserver_url,
            "access_token": access_token,
            "device_id": device_id,
            # The plugin decides which invites to accept (allowlist in its config).
            "autojoin": False,
            "sync": True,
            "enabled": True,
            "online": True,
            "displayname": "disable",
            "avatar_url": "disable",
        }
        return dict(self.api("PUT", f"/client/{user_id}", body))

    def put_instance(
        self, instance_id: str, plugin_id: str, user_id: str, config_yaml: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": plugin_id,
            "primary_user": user_id,
            "enabled": True,
            "started": True,
        }
        if config_yaml is not None:
            body["config"] = config_yaml
        return dict(self.api("PUT", f"/instance/{instance_id}", body))

    def get_instance(self, instance_id: str) -> dict[str, Any]:
        return dict(self.api("GET", f"/instance/{instance_id}"))
