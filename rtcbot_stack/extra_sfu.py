"""One more LiveKit SFU beside the stack's own: a second MatrixRTC transport, as another
homeserver's SFU would be (multi-SFU calls). Same binary and settings as the stack's LiveKit
(livekit.py), on free ports, with its own API key and secret, on the same node address (so
inside the test namespace it is reachable by the same peers and nothing else)."""

from __future__ import annotations

import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from .livekit import LiveKit, LiveKitOptions
from .stack import free_port


@dataclass(frozen=True)
class SfuKeys:
    api_key: str
    api_secret: str  # >= 32 characters, as LiveKit wants

    @staticmethod
    def new(prefix: str = "rtcbot-extra") -> SfuKeys:
        return SfuKeys(f"{prefix}-{secrets.token_hex(4)}", secrets.token_urlsafe(36))


def extra_livekit(
    data_dir: Path,
    node_ip: str,
    keys: SfuKeys,
    webhook_urls: tuple[str, ...] = (),
) -> LiveKit:
    """A LiveKit (not started) on fresh ports; `start()` it, `stop()` it when done."""
    return LiveKit(
        data_dir,
        LiveKitOptions(
            port=free_port(),
            tcp_port=free_port(),
            udp_port=free_port(socket.SOCK_DGRAM),
            api_key=keys.api_key,
            api_secret=keys.api_secret,
            node_ip=node_ip,
            webhook_urls=webhook_urls,
        ),
    )


__all__ = ["SfuKeys", "extra_livekit"]
