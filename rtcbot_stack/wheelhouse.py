"""The plugin's requirements as wheels from the package index, kept for the deployment test.

`make setup` downloads them (cached per version of requirements.txt); the deployment test then
installs a plain maubot into a virtualenv of its own exactly as docs/DEPLOYMENT.md says
(`pip install -r requirements.txt`), with pip pointed at these wheels by its environment
(PIP_NO_INDEX, PIP_FIND_LINKS): the test runs in a network namespace with no way out.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from .paths import CACHE_DIR, ROOT

REQUIREMENTS = ROOT / "requirements.txt"


def wheelhouse(requirements: Path = REQUIREMENTS) -> Path:
    digest = hashlib.sha1(requirements.read_bytes()).hexdigest()[:12]
    return CACHE_DIR / f"wheels-{digest}"


def pip_env(requirements: Path = REQUIREMENTS) -> dict[str, str]:
    """What makes `pip install -r requirements.txt` take the cached wheels, offline."""
    return {
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheelhouse(requirements)),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }


def download(requirements: Path = REQUIREMENTS) -> Path:
    target = wheelhouse(requirements)
    done = target / ".complete"
    if done.exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "-r",
            str(requirements),
            "-d",
            str(target),
        ],
        check=True,
    )
    done.touch()
    return target


if __name__ == "__main__":
    print(f"wheels for the deployment test: {download()}")
