"""`make run`'s supervision of maubot: the policy, a real child process killed and restarted,
a crash loop given up on, and the real maubot of the stack killed with SIGKILL."""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rtcbot_stack.process import Child
from rtcbot_stack.stack import Stack, load_stack_json
from rtcbot_stack.supervisor import (
    ExitHistory,
    RestartPolicy,
    Supervisor,
    describe_exit,
    supervise_maubot,
)
from tests.stack.matrix_user import MatrixUser, body

FAST = RestartPolicy(max_exits=5, window_s=60, first_backoff_s=0.0, max_backoff_s=0.0)


def poll_until(supervisor: Supervisor, done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"supervisor did not get there in {timeout} s")
        supervisor.poll()
        time.sleep(0.02)  # the polling interval, as in `make run`


# -- the policy (pure: times are given) ---------------------------------------------------------
def test_backoff_doubles_and_the_fifth_exit_within_the_window_gives_up() -> None:
    history = ExitHistory(RestartPolicy(max_exits=5, window_s=60, first_backoff_s=1))
    assert [history.record(t) for t in (0, 1, 2, 3)] == [1, 2, 4, 8]
    assert history.record(59.9) is None


def test_exits_older_than_the_window_are_forgotten() -> None:
    history = ExitHistory(RestartPolicy(max_exits=5, window_s=60, first_backoff_s=1))
    for t in (0, 10, 20, 30):
        assert history.record(t) is not None
    assert history.record(60) == 8  # the exit at 0 has left the window: 4 recent
    assert history.record(75) == 8  # 10 has left too
    assert history.recent == 4


def test_exit_descriptions() -> None:
    assert describe_exit(-9) == "was killed by signal 9 (SIGKILL)"
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(0) == "exited with code 0"


# -- a real child process ----------------------------------------------------------------------
class Holder:
    """Starts `code` as a fresh child process each time, like Maubot.start does."""

    def __init__(self, tmp: Path, code: str) -> None:
        self.argv = [sys.executable, "-c", code]
        self.log = tmp / "child.log"
        self.child = Child("child", self.argv, self.log, tmp)
        self.starts = 0

    def start(self) -> None:
        self.child = Child("child", self.argv, self.log, self.log.parent)
        self.child.start()
        self.starts += 1

    def wait_for_log(self, text: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} not in the child's log after {timeout} s")
            time.sleep(0.02)


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    made: list[Holder] = []
    yield made
    for h in made:
        h.child.kill()


def test_a_killed_child_is_reported_and_restarted(tmp_path: Path, holders: list[Holder]) -> None:
    holder = Holder(tmp_path, "print('child up', flush=True); import time; time.sleep(600)")
    holders.append(holder)
    holder.start()
    out = io.StringIO()
    changes: list[int | None] = []
    sup = Supervisor(
        "child",
        child=lambda: holder.child,
        start=holder.start,
        policy=FAST,
        out=out,
        on_change=lambda: changes.append(holder.child.returncode),
    )
    first = holder.child.pid
    holder.wait_for_log("child up")
    sup.poll()
    assert sup.restarts == 0 and out.getvalue() == ""

    os.kill(first, signal.SIGKILL)
    poll_until(sup, lambda: sup.restarts == 1, 10)
    assert holder.child.alive() and holder.child.pid != first
    text = out.getvalue()
    assert f"child (pid {first}) was killed by signal 9 (SIGKILL)" in text
    assert "| child up" in text  # the last lines of its log
    assert f"child is back (pid {holder.child.pid}" in text
    assert changes == [-9, None]  # after the exit (still dead), after the restart (running)
    assert not sup.gave_up


def test_a_crash_loop_is_given_up_after_five_exits(tmp_path: Path, holders: list[Holder]) -> None:
    holder = Holder(tmp_path, "print('boom', flush=True); raise SystemExit(3)")
    holders.append(holder)
    holder.start()
    out = io.StringIO()
    sup = Supervisor("child", child=lambda: holder.child, start=holder.start, policy=FAST, out=out)
    poll_until(sup, lambda: sup.gave_up, 20)
    assert sup.exits == 5 and holder.starts == 5 and sup.restarts == 4
    text = out.getvalue()
    assert text.count("exited with code 3") == 5
    assert "| boom" in text
    assert "child exited 5 times within 60 s: crash loop, not restarting it" in text
    sup.poll()  # stays given up
    assert holder.starts == 5


def test_quiet_while_stopping(tmp_path: Path, holders: list[Holder]) -> None:
    holder = Holder(tmp_path, "raise SystemExit(1)")
    holders.append(holder)
    holder.start()
    out = io.StringIO()
    sup = Supervisor(
        "child", lambda: holder.child, holder.start, FAST, out=out, stopping=lambda: True
    )
    deadline = time.monotonic() + 10
    while holder.child.alive():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    sup.poll()
    assert out.getvalue() == "" and holder.starts == 1


# -- the stack's real maubot -------------------------------------------------------------------
@pytest.mark.stack
async def test_make_runs_supervisor_restarts_a_killed_maubot(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str
) -> None:
    out = io.StringIO()
    sup = supervise_maubot(stack, out=out, policy=FAST)
    stack.write_json()
    state = stack.settings.state_dir
    old = stack.maubot.child.pid
    assert load_stack_json(state)["maubot"]["pid"] == old

    os.kill(old, signal.SIGKILL)  # as a user would, from outside
    poll_until(sup, lambda: sup.restarts == 1, 90)
    new = stack.maubot.child.pid
    assert new != old and stack.maubot.child.alive()
    assert f"maubot (pid {old}) was killed by signal 9 (SIGKILL)" in out.getvalue()
    assert json.loads((state / "stack.json").read_text())["maubot"]["pid"] == new
    # The bot answers again. (This also ends maubot's first /sync after the start, which maubot
    # skips, so the next test's invite is not lost in it.)
    reply = await alice.command(bot_room, "!call version", bot_id, timeout=30)
    assert body(reply)
