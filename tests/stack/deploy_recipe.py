"""docs/DEPLOYMENT.md's recipe as steps a test can run: the shell blocks marked
`<!-- deploy-test: <name> -->`, in order, exactly as an operator would paste them.

The blocks share one shell session, as in a terminal: what a step exports, the next step sees
(kept in a file between steps). A step marked `(background)` is a long-running server.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from rtcbot_stack.paths import ROOT

DOC = ROOT / "docs" / "DEPLOYMENT.md"
_STEP = re.compile(
    r"<!-- deploy-test: (?P<name>[\w-]+)(?P<note>[^>]*)-->\n```sh\n(?P<script>.*?)\n```", re.S
)


@dataclass(frozen=True)
class Step:
    name: str
    script: str
    background: bool


def recipe_steps(text: str | None = None) -> list[Step]:
    """The steps to run; the settings block is the operator's, the test brings its own."""
    steps = []
    for m in _STEP.finditer(text if text is not None else DOC.read_text()):
        if m["name"] == "settings":
            continue
        steps.append(Step(m["name"], m["script"], "(background)" in m["note"]))
    return steps


class Shell:
    """One operator's terminal: the settings in `env`, the working directory the checkout."""

    def __init__(self, env: dict[str, str], state: Path, cwd: Path = ROOT) -> None:
        self.env, self.state, self.cwd = env, state, cwd
        state.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))

    def _wrapped(self, script: str, save: bool) -> list[str]:
        tail = f"\nexport -p > {shlex.quote(str(self.state))}" if save else ""
        return [
            "bash",
            "-c",
            f"set -euo pipefail\nsource {shlex.quote(str(self.state))}\n{script}{tail}",
        ]

    def run(self, step: Step, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self._wrapped(step.script, save=True),
            cwd=self.cwd,
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"docs/DEPLOYMENT.md step {step.name!r} failed ({done.returncode}):\n"
                f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
            )
        return done

    def start(self, step: Step, log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen(
                self._wrapped(step.script, save=False),
                cwd=self.cwd,
                env=dict(os.environ),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
