"""The LiveKit SFU, configured for either an isolated namespace or a person's own machine."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import http
from .livekit_build import ensure_livekit_server
from .process import Child


@dataclass
class LiveKitOptions:
    port: int  # HTTP / WebSocket signalling / Twirp API
    tcp_port: int  # ICE-TCP
    udp_port: int  # single ICE-UDP mux port
    api_key: str
    api_secret: str  # >= 32 characters
    # The address advertised in ICE candidates: the veth address inside the test namespace,
    # loopback (or the LAN address a person chooses) on host networking.
    node_ip: str = "127.0.0.1"
    webhook_urls: tuple[str, ...] = ()


def livekit_config(opts: LiveKitOptions) -> dict[str, Any]:
    loopback = opts.node_ip.startswith("127.")
    cfg: dict[str, Any] = {
        "port": opts.port,
        "bind_addresses": ["127.0.0.1"],
        "keys": {opts.api_key: opts.api_secret},
        "rtc": {
            "tcp_port": opts.tcp_port,
            "udp_port": opts.udp_port,
            "use_external_ip": False,  # no STUN probe of public servers at startup
            "node_ip": opts.node_ip,
            # An empty list means "Google's defaults" to clients: point them at our own
            # address instead, so no client ever sends a packet outside.
            "stun_servers": [f"{opts.node_ip}:3478"],
            "enable_loopback_candidate": loopback,
        },
        "room": {"auto_create": True, "empty_timeout": 30, "departure_timeout": 5},
        "logging": {"level": "info"},
    }
    if opts.webhook_urls:
        cfg["webhook"] = {"api_key": opts.api_key, "urls": list(opts.webhook_urls)}
    return cfg


class LiveKit:
    def __init__(self, data_dir: Path, opts: LiveKitOptions) -> None:
        self.data_dir = data_dir
        self.opts = opts
        self.url = f"ws://127.0.0.1:{opts.port}"
        self.http_url = f"http://127.0.0.1:{opts.port}"
        self.child: Child | None = None

    def start(self, timeout: float = 30) -> float:
        binary = ensure_livekit_server()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.data_dir / "livekit.yaml"
        config_path.write_text(json.dumps(livekit_config(self.opts), indent=1))
        self.child = Child(
            "livekit",
            [str(binary), "--config", str(config_path)],
            self.data_dir / "livekit.log",
            self.data_dir,
        )
        self.child.start()
        try:
            return http.wait_until_up(f"{self.http_url}/", timeout, self.child.alive)
        except Exception as e:
            raise RuntimeError(f"LiveKit did not start: {e}\n{self.child.log_tail()}") from e

    def stop(self) -> None:
        if self.child:
            self.child.stop()
