"""Session fixtures: the real stack (Synapse, LiveKit, maubot + rtcbot), users, rooms, peers.

`make test` runs pytest inside a fresh network namespace (rtcbot_stack.netns); the stack's
processes and every WebRTC peer live there, so no packet can leave.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from rtcbot_stack.stack import Stack, StackSettings
from tests.stack.isolation import require_isolation
from tests.stack.matrix_user import MatrixUser
from tests.stack.peers import Peer, mint_token

# Property tests compute, they do not wait: no per-example deadline, which a loaded 2-core
# machine (a stack test beside them) would otherwise turn into a failure by the clock.
settings.register_profile("rtcbot", deadline=None)
settings.load_profile("rtcbot")

_counter = itertools.count()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    ns = require_isolation()
    state = Path(tmp_path_factory.mktemp("stack"))
    s = Stack(StackSettings(state_dir=state, netns=ns, demo_room=False)).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="session")
def bot_id(stack: Stack) -> str:
    return str(stack.bot["user_id"])


UserFactory = Callable[..., Awaitable[MatrixUser]]


@pytest.fixture
async def make_user(stack: Stack) -> AsyncIterator[UserFactory]:
    made: list[MatrixUser] = []

    async def factory(name: str = "user", admin: bool = False) -> MatrixUser:
        localpart = f"{name}{next(_counter)}_{uuid.uuid4().hex[:6]}"
        device = f"{name.upper()}DEV"
        stack.synapse.register(localpart, "pw", admin=admin)
        login = stack.synapse.login(localpart, "pw", device)
        user = MatrixUser(stack.synapse.url, login["user_id"], login["access_token"], device)
        made.append(user)
        return user

    yield factory
    for user in made:
        await user.close()


@pytest.fixture
async def alice(make_user: UserFactory) -> MatrixUser:
    return await make_user("alice")


@pytest.fixture
async def bot_room(alice: MatrixUser, bot_id: str) -> str:
    """A fresh room created by alice with the bot invited and joined."""
    room = await alice.create_room(invite=[bot_id])
    await alice.wait_for_member(room, bot_id)
    return room


PeerFactory = Callable[..., Awaitable[Peer]]


@pytest.fixture
async def make_peer(stack: Stack) -> AsyncIterator[PeerFactory]:
    peers: list[Peer] = []

    async def factory(room: str, identity: str, publish: bool = True) -> Peer:
        token = mint_token(
            stack.secrets["livekit_api_key"],
            stack.secrets["livekit_api_secret"],
            room,
            identity,
            publish=publish,
        )
        peer = Peer(identity)
        await peer.connect(stack.livekit.url, token)
        peers.append(peer)
        return peer

    yield factory
    for peer in peers:
        await peer.close()


# -- two workers (Makefile `test`: pytest-xdist, --dist loadgroup) ----------------------------------
# Tests that compute (Chromium with Element Call, Whisper, frame encryption of live audio) run
# one after another on one worker: two of them at once on 2 cores drop audio frames and miss
# keys, which no assertion should depend on. Every other file is a group of its own (its tests
# share a worker and its fixtures), and those mostly wait.
CPU_BOUND = (
    "tests/browser/",
    "tests/integration/test_transcripts.py",
    "tests/integration/test_recording_delete.py",
    "tests/integration/test_recap.py",
    "tests/integration/test_captions.py",
    "tests/integration/test_frame_keys.py",
    "tests/integration/test_encrypted_room.py",
    "tests/integration/test_e2ee_restarts.py",
)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """The groups above, by our own scheduler. xdist 3.8's `loadgroup` marks a group by
    rewriting `item._nodeid`, which pytest 9 no longer reads (a node's id is `_id`): every
    `xdist_group` was silently ignored, and Chromium ran beside Whisper on the other worker."""
    from xdist.scheduler import LoadScopeScheduling

    class FileOrCpuGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "cpu" if path.startswith(CPU_BOUND) else path

    return FileOrCpuGroups(config, log)


# -- a hung test -----------------------------------------------------------------------------------
def _dump_tasks(_signum: int, _frame: object) -> None:
    """`kill -USR1 <pytest or worker pid>`: where every asyncio task of the tests waits (a thread
    dump shows only the event loop's select, not which await hangs)."""
    loop = asyncio._get_running_loop()
    if loop is None:
        return
    for task in asyncio.all_tasks(loop):
        task.print_stack(limit=12, file=sys.stderr)
    sys.stderr.flush()


def pytest_configure(config: pytest.Config) -> None:
    signal.signal(signal.SIGUSR1, _dump_tasks)


# -- leaving the test process ---------------------------------------------------------------------
_exit_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave with pytest's own status once everything is reported and torn down.

    LiveKit's Python SDK runs a Rust/tokio runtime (its FFI) that can panic while the
    interpreter finalizes ("panic in a function that cannot unwind", exit 250), after every
    test passed and every fixture was torn down: seen once in a targeted run. Nothing is
    left to do then, so finalization is skipped; a real failure keeps its own status."""
    if _exit_status and "livekit.rtc" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[-1])
