"""Keep a child of the stack running: say why it exited, restart it after a backoff, and give
up when it crashes in a tight loop.

`make run` supervises maubot with it, so a user can `kill -9` maubot and watch the bot's call
membership vanish by itself (its MSC4140 delayed leave) while Synapse and LiveKit stay up, then
see the bot come back. The policy is pure (times passed in); the supervisor polls, never blocks
except while the child starts again.
"""

from __future__ import annotations

import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, TextIO

from .process import Child

if TYPE_CHECKING:
    from .stack import Stack


LINE_MAX = 200  # log lines quoted on an exit are cut to this many characters


@dataclass(frozen=True)
class RestartPolicy:
    """Restart after `first_backoff_s`, doubling up to `max_backoff_s` with every exit inside
    the window; the `max_exits`-th exit within `window_s` seconds means: stop trying."""

    max_exits: int = 5
    window_s: float = 60.0
    first_backoff_s: float = 1.0
    max_backoff_s: float = 8.0


class ExitHistory:
    """The exits seen within the policy's window, and what to do about the next one."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self.exits: deque[float] = deque()

    def record(self, now: float) -> float | None:
        """An exit at `now`: the backoff before restarting, or None to give up."""
        self.exits.append(now)
        while self.exits and self.exits[0] <= now - self.policy.window_s:
            self.exits.popleft()
        n = len(self.exits)
        if n >= self.policy.max_exits:
            return None
        return float(min(self.policy.first_backoff_s * 2 ** (n - 1), self.policy.max_backoff_s))

    @property
    def recent(self) -> int:
        return len(self.exits)


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "ended (no exit status)"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return f"was killed by signal {-returncode} ({name})"
    return f"exited with code {returncode}"


class Phase(StrEnum):
    RUNNING = "running"
    WAITING = "waiting to restart"
    GAVE_UP = "gave up"


class Supervisor:
    def __init__(
        self,
        name: str,
        child: Callable[[], Child],
        start: Callable[[], object],
        policy: RestartPolicy | None = None,
        out: TextIO | None = None,
        on_change: Callable[[], object] | None = None,
        stopping: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
        log_lines: int = 12,
    ) -> None:
        """`child()` is the current process (a restart may replace it); `start()` starts a new
        one and returns once it serves; `on_change()` runs after every exit and restart (e.g.
        rewrite stack.json); `stopping()` true means a stop is under way: stay quiet."""
        self.name = name
        self.child = child
        self.start = start
        self.history = ExitHistory(policy or RestartPolicy())
        self.out = out if out is not None else sys.stdout
        self.on_change = on_change
        self.stopping = stopping or (lambda: False)
        self.clock = clock
        self.log_lines = log_lines
        self.phase = Phase.RUNNING
        self.restart_at = 0.0
        self.restarts = 0
        self.exits = 0

    @property
    def gave_up(self) -> bool:
        return self.phase == Phase.GAVE_UP

    def poll(self) -> None:
        """Look at the child once; restart it when its backoff is over."""
        if self.stopping() or self.phase == Phase.GAVE_UP:
            return
        if self.phase == Phase.RUNNING:
            child = self.child()
            if child.alive():
                return
            self._exited(child, child.returncode, "")
        if self.phase == Phase.WAITING and self.clock() >= self.restart_at:
            self._restart()

    # -- internals ---------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=self.out, flush=True)

    def _exited(self, child: Child, returncode: int | None, why: str) -> None:
        self.exits += 1
        pid = child.proc.pid if child.proc is not None else "?"
        tail = child.log_tail(self.log_lines)
        self._say(
            f"{self.name} (pid {pid}) {why or describe_exit(returncode)}; "
            f"last lines of {child.log_path}:"
        )
        for line in tail.splitlines() or ["(empty)"]:
            cut = line if len(line) <= LINE_MAX else line[: LINE_MAX - 1] + "…"
            print(f"    | {cut}", file=self.out)
        backoff = self.history.record(self.clock())
        if self.on_change is not None:
            self.on_change()
        policy = self.history.policy
        if backoff is None:
            self.phase = Phase.GAVE_UP
            self._say(
                f"{self.name} exited {self.history.recent} times within "
                f"{policy.window_s:.0f} s: crash loop, not restarting it"
            )
            return
        self.phase = Phase.WAITING
        self.restart_at = self.clock() + backoff
        self._say(
            f"restarting {self.name} in {backoff:g} s (exit {self.history.recent} within "
            f"{policy.window_s:.0f} s; at {policy.max_exits} it is not restarted)"
        )

    def _restart(self) -> None:
        t0 = self.clock()
        try:
            self.start()
        except Exception as e:
            if self.stopping():
                return
            child = self.child()
            if child.alive():  # running but not serving: make it an exit
                child.kill()
                why = f"did not come up ({str(e).splitlines()[0]}); killed it"
            else:
                why = f"{describe_exit(child.returncode)} while starting"
            self._exited(child, child.returncode, why)
            return
        self.restarts += 1
        self.phase = Phase.RUNNING
        if self.on_change is not None:
            self.on_change()
        self._say(
            f"{self.name} is back (pid {self.child().pid}, started in "
            f"{self.clock() - t0:.1f} s; restart {self.restarts})"
        )


def supervise_maubot(
    stack: Stack,
    out: TextIO | None = None,
    stopping: Callable[[], bool] | None = None,
    policy: RestartPolicy | None = None,
) -> Supervisor:
    """The supervisor `make run` uses: maubot restarted in place, stack.json rewritten with its
    new pid (null while it is down)."""
    return Supervisor(
        "maubot",
        child=lambda: stack.maubot.child,
        start=lambda: stack.maubot.start(cancelled=stopping),
        policy=policy,
        out=out,
        on_change=stack.write_json,
        stopping=stopping,
    )
