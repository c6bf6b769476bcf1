"""Stop `make setup` early, and say what to install, on a Python rtcbot cannot run on.

Run as a plain script with the interpreter that would make the virtualenv (stdlib only).
The bounds: `asyncio.timeout` needs 3.11; python-olm 3.2.16, the bot's encryption, has
wheels for CPython 3.10-3.12 only (3.13 would compile libolm and fail).
"""

from __future__ import annotations

import sys

SUPPORTED = ((3, 11), (3, 12))


def problem(version: tuple[int, int]) -> str | None:
    if version in SUPPORTED:
        return None
    found = f"{version[0]}.{version[1]}"
    return (
        f"rtcbot needs Python 3.11 or 3.12; `{sys.executable}` is {found}.\n"
        "  Install one (Debian/Ubuntu: apt install python3.11 python3.11-venv) and run\n"
        "      make setup PY_BASE=python3.11\n"
        "  (3.13 and later: python-olm, the bot's encryption, has no wheel for them yet;\n"
        "   3.10 and earlier lack asyncio.timeout.)"
    )


if __name__ == "__main__":
    message = problem((sys.version_info[0], sys.version_info[1]))
    if message:
        print(message, file=sys.stderr)
        sys.exit(1)
