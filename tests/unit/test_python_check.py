"""`make setup` on a Python rtcbot cannot run on stops and names the one to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rtcbot_stack.python_check import problem

SCRIPT = Path(__file__).parents[2] / "rtcbot_stack" / "python_check.py"


def test_supported_versions_pass() -> None:
    assert problem((3, 11)) is None
    assert problem((3, 12)) is None


def test_too_new_and_too_old_say_what_to_install() -> None:
    for version in ((3, 13), (3, 14), (3, 10)):
        message = problem(version)
        assert message is not None
        assert f"{version[0]}.{version[1]}" in message
        assert "make setup PY_BASE=python3.11" in message


def test_the_script_runs_without_the_virtualenv() -> None:
    # It runs before .venv exists: as a plain script, stdlib only, exit 0 on this Python.
    done = subprocess.run([sys.executable, "-I", str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
