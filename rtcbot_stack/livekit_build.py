"""The LiveKit server binary, built once from its Go module (go_tools.py) and cached."""

from __future__ import annotations

from pathlib import Path

from .go_tools import LIVEKIT_SERVER, GoTool, ensure
from .paths import LIVEKIT_BIN


def ensure_livekit_server(binary: Path = LIVEKIT_BIN) -> Path:
    """Return the cached server binary, building it first if it is missing."""
    tool = (
        LIVEKIT_SERVER
        if binary == LIVEKIT_BIN
        else GoTool(LIVEKIT_SERVER.what, LIVEKIT_SERVER.module, LIVEKIT_SERVER.version, binary)
    )
    return ensure(tool)


if __name__ == "__main__":
    print(ensure_livekit_server())
