"""Where the stack keeps its files, binaries and virtualenvs."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("RTCBOT_STATE_DIR", ROOT / ".stack"))
# Outside the tracked tree: survives `make clean` and fresh clones on the same machine.
CACHE_DIR = Path(os.environ.get("RTCBOT_CACHE_DIR", Path.home() / ".cache" / "rtcbot"))

LIVEKIT_VERSION = "v1.13.5"
LIVEKIT_MODULE = "github.com/livekit/livekit-server/cmd/server"
LIVEKIT_BIN = Path(
    os.environ.get("RTCBOT_LIVEKIT_BIN", CACHE_DIR / f"livekit-server-{LIVEKIT_VERSION}")
)

SYNAPSE_PYTHON = Path(
    os.environ.get("RTCBOT_SYNAPSE_PYTHON", ROOT / ".venv-synapse" / "bin" / "python")
)
# maubot (and the plugin's dependencies) live in the project venv.
MAUBOT_PYTHON = Path(os.environ.get("RTCBOT_MAUBOT_PYTHON", ROOT / ".venv" / "bin" / "python"))
