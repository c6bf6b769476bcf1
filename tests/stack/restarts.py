"""What the E2EE restart tests share: a stack started as `make run` starts it (fixed ports, a
state directory kept across starts), a crypto user on it, and maubot killed with SIGKILL under
`make run`'s supervisor."""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path

from rtcbot_stack.stack import Stack, StackSettings, free_ports
from rtcbot_stack.supervisor import Supervisor, supervise_maubot
from tests.crypto_client.client import CryptoClient, Driver
from tests.integration.test_supervisor import FAST, poll_until
from tests.stack.isolation import require_isolation


def make_run_settings(tmp_path: Path) -> StackSettings:
    """Settings of a stack of its own, as `make run` (start it twice on them to reuse the state
    as `.stack/` is reused): the same ports at every start, free ones rather than `make run`'s
    fixed ports, which a test on the other worker may hold at the same time."""
    ns = require_isolation()
    settings = StackSettings(state_dir=tmp_path / "state", netns=ns, ports=free_ports())
    settings.demo_room = False
    return settings


async def crypto_login(driver: Driver, stack: Stack, name: str, device: str) -> CryptoClient:
    """A new user `name` on the stack's Synapse, logged in with E2EE on `device`."""
    stack.synapse.register(name, "pw")
    login = stack.synapse.login(name, "pw", device)
    return await CryptoClient.login(
        driver, stack.synapse.url, login["user_id"], device, login["access_token"]
    )


def kill_9_under_supervisor(stack: Stack) -> Supervisor:
    """maubot killed with SIGKILL; returns once `make run`'s supervisor has started it again."""
    sup = supervise_maubot(stack, out=io.StringIO(), policy=FAST)
    os.kill(stack.maubot.child.pid, signal.SIGKILL)
    poll_until(sup, lambda: sup.restarts == 1, 90)
    return sup
