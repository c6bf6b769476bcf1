"""Go programs the stack and the tests need, built once from their modules and cached.

`go install module@version` is refused for modules whose go.mod has `replace` directives;
the LiveKit server v1.13.5 and Prometheus v0.316.0 (promtool) have none, so this form works.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .paths import CACHE_DIR, LIVEKIT_BIN, LIVEKIT_MODULE, LIVEKIT_VERSION


@dataclass(frozen=True)
class GoTool:
    what: str  # for the messages: "LiveKit server"
    module: str  # the main package's import path
    version: str
    binary: Path  # where the built program is kept

    @property
    def built_name(self) -> str:
        return self.module.rstrip("/").rsplit("/", 1)[-1]


LIVEKIT_SERVER = GoTool("LiveKit server", LIVEKIT_MODULE, LIVEKIT_VERSION, LIVEKIT_BIN)
PROMTOOL_VERSION = "v0.316.0"
PROMTOOL = GoTool(
    "promtool",
    "github.com/prometheus/prometheus/cmd/promtool",
    PROMTOOL_VERSION,
    Path(os.environ.get("RTCBOT_PROMTOOL_BIN", CACHE_DIR / f"promtool-{PROMTOOL_VERSION}")),
)


def ensure(tool: GoTool) -> Path:
    """Return the cached program, building it first if it is missing."""
    if tool.binary.exists() and os.access(tool.binary, os.X_OK):
        return tool.binary
    if shutil.which("go") is None:
        raise RuntimeError(f"Go is not installed: it is needed once to build the {tool.what}")
    tool.binary.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    print(f"building {tool.what} {tool.version} (once; cached at {tool.binary}) …", flush=True)
    with tempfile.TemporaryDirectory(prefix="go-build-") as gobin:
        env = {**os.environ, "GOBIN": gobin, "CGO_ENABLED": "0"}
        subprocess.run(["go", "install", f"{tool.module}@{tool.version}"], env=env, check=True)
        tmp = tool.binary.with_suffix(".tmp")
        shutil.copy2(Path(gobin) / tool.built_name, tmp)
        tmp.replace(tool.binary)
    print(f"{tool.what} built in {time.monotonic() - started:.0f} s", flush=True)
    return tool.binary


if __name__ == "__main__":
    names = {"livekit": LIVEKIT_SERVER, "promtool": PROMTOOL}
    for name in sys.argv[1:] or ["livekit"]:
        print(ensure(names[name]))
