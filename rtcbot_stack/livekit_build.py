"""Build the LiveKit server once from its Go module and cache the binary.

`go install module@version` is refused for modules whose go.mod has `replace` directives;
v1.13.5 has none, so this form works.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .paths import LIVEKIT_BIN, LIVEKIT_MODULE, LIVEKIT_VERSION


def ensure_livekit_server(binary: Path = LIVEKIT_BIN) -> Path:
    """Return the cached server binary, building it first if it is missing."""
    if binary.exists() and os.access(binary, os.X_OK):
        return binary
    if shutil.which("go") is None:
        raise RuntimeError("Go is not installed: it is needed once to build the LiveKit server")
    binary.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    print(f"building LiveKit server {LIVEKIT_VERSION} (once; cached at {binary}) …", flush=True)
    with tempfile.TemporaryDirectory(prefix="lk-build-") as gobin:
        env = {**os.environ, "GOBIN": gobin, "CGO_ENABLED": "0"}
        subprocess.run(
            ["go", "install", f"{LIVEKIT_MODULE}@{LIVEKIT_VERSION}"], env=env, check=True
        )
        tmp = binary.with_suffix(".tmp")
        shutil.copy2(Path(gobin) / "server", tmp)
        tmp.replace(binary)
    print(f"LiveKit server built in {time.monotonic() - started:.0f} s", flush=True)
    return binary


if __name__ == "__main__":
    print(ensure_livekit_server())
    sys.exit(0)
