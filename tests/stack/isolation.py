"""Where the stack tests may run: in `make test`'s network namespace, or knowingly on host
networking. Anywhere else they fail and say how, rather than skip: a green run with the stack
tests skipped would claim what nobody checked."""

from __future__ import annotations

import os

import pytest

from rtcbot_stack import netns


def require_isolation() -> netns.NetNs | None:
    ns = netns.current()
    if ns is None and os.environ.get("RTCBOT_HOST_NETWORK") != "1":
        pytest.fail(
            "stack tests run inside `make test` (a network namespace, as root or as any user "
            "with unprivileged user namespaces); `make test NETWORK=host` runs them on host "
            "networking",
            pytrace=False,
        )
    return ns
