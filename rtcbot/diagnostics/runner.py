"""Running `!call diag`: every group of checks concurrently, each under its own timeout, and the
report as one message edited in place as they finish (at most two edits a second).

`CheckRunner` is the guard around one group: whatever the group leaves unanswered (timeout,
cancellation, an unexpected error) still gets a line that explains it. `Diagnostics` wires the
command, the report message and the groups.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Final

from mautrix.types import EventID, RoomID

from ..commands.router import CommandContext, CommandRouter
from ..context import BotContext
from ..e2ee.keys_report import KeysReport
from ..ports import CallDirectory
from ..tasks import cancel_and_wait
from . import (
    auth,
    clock_ghosts,
    crypto,
    delayed,
    discovery,
    functional,
    media_keys,
    own_membership,
    permissions,
    slot,
)
from .probe import Probe, RunState
from .report import (
    AUTH_ENDPOINTS,
    AUTH_HEALTH,
    CLOCK,
    CRYPTO,
    DELAYED,
    FAIL,
    FUNCTIONAL,
    GHOSTS,
    ICONS,
    JWT,
    LINES,
    MEDIA_KEYS,
    OPENID,
    OWN_MEMBERSHIP,
    PERM_BOT,
    PERM_MEMBERS,
    ROUND_TRIP,
    SFU,
    SKIP,
    SLOT,
    STATE_KEY,
    STICKY,
    TRANSPORTS,
    WARN,
    WELL_KNOWN,
    Check,
    error_text,
    matrix_error,
    redact,
    render,
)
from .throttle import DiagThrottle

OVERALL_TIMEOUT_S: Final = 9.5  # every check is done or abandoned by then (the brief says ≤ 10 s)
EDIT_INTERVAL_S: Final = 0.5  # at most two progress edits a second

CheckFn = Callable[[RunState], Awaitable[None]]
GroupFn = Callable[[Probe, RunState], Awaitable[None]]

# (the lines a group answers, its timeout in s, the group), started in this order.
GROUPS: Final[tuple[tuple[tuple[str, ...], float, GroupFn], ...]] = (
    ((DELAYED,), 5, delayed.delayed_support),
    ((STICKY,), 5, clock_ghosts.sticky_events),
    ((ROUND_TRIP,), 8, delayed.round_trip),
    ((TRANSPORTS, WELL_KNOWN), 6, discovery.discovery),
    ((AUTH_HEALTH, AUTH_ENDPOINTS, OPENID, JWT, SFU), 9, auth.authorization),
    ((PERM_BOT, PERM_MEMBERS), 5, permissions.call_permissions),
    ((STATE_KEY, OWN_MEMBERSHIP), 6, own_membership.own_key_and_membership),
    ((SLOT,), 4, slot.slot_check),
    ((FUNCTIONAL,), 4, functional.functional_check),
    ((CLOCK,), 4, clock_ghosts.clock_skew),
    ((GHOSTS,), 5, clock_ghosts.ghost_memberships),
    ((CRYPTO,), 5, crypto.crypto_check),
    ((MEDIA_KEYS,), 2, media_keys.media_keys_check),
)


class CheckRunner:
    """Runs one group of checks so that each of its lines ends up answered."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log

    async def guard(
        self, run: RunState, names: tuple[str, ...], timeout: float, fn: CheckFn
    ) -> None:
        """Run one group of checks; whatever it leaves unanswered gets an explanation."""
        try:
            async with asyncio.timeout(timeout):
                await fn(run)
        except TimeoutError:
            for name in run.missing(names):
                run.put(
                    Check(
                        name,
                        FAIL,
                        f"no answer within {timeout:g} s",
                        cause="A server involved in this check is overloaded or unreachable.",
                        fix="Check the homeserver's, the service's and LiveKit's logs.",
                    )
                )
        except asyncio.CancelledError:
            for name in run.missing(names):
                run.put(
                    Check(
                        name,
                        FAIL,
                        f"did not finish within the {OVERALL_TIMEOUT_S:g} s budget",
                        cause="A server involved in this check is overloaded or unreachable.",
                        fix="Check the homeserver's, the service's and LiveKit's logs.",
                    )
                )
            raise
        except Exception as e:
            # The exception's text could quote a URL with a token: redacted, frames only.
            self.log.warning(
                "diagnostics check %s failed: %s\n%s",
                "/".join(names),
                error_text(e, run.secrets),
                "".join(traceback.format_tb(e.__traceback__)),
            )
            for name in run.missing(names):
                run.put(
                    Check(
                        name,
                        FAIL,
                        "the check itself failed unexpectedly",
                        cause=error_text(e, run.secrets),
                        fix="This is a bug in rtcbot; the details are in the bot's log.",
                    )
                )
        else:
            for name in run.missing(names):
                run.put(Check(name, SKIP, "not checked"))


class Diagnostics:
    """`!call diag`: check from the bot's seat everything a MatrixRTC call in a room needs."""

    def __init__(
        self,
        ctx: BotContext,
        calls: CallDirectory,
        keys_report: Callable[[str], KeysReport | None] | None = None,
    ) -> None:
        self.ctx = ctx
        self.log = ctx.logger("diagnostics")
        self.probe = Probe(ctx, calls, self.log, keys_report=keys_report)
        self.runner = CheckRunner(self.log)
        self.throttle = DiagThrottle()

    def register(self, router: CommandRouter) -> None:
        router.add(
            "diag",
            "[--verbose]",
            "check delayed events, the authorization service, the SFU and permissions for calls here",
            self.command,
        )

    async def command(self, cmd: CommandContext) -> None:
        verbose = any(a.lower() in ("--verbose", "-v", "verbose") for a in cmd.line.args)
        refusal = self.throttle.refusal(cmd.room_id, f"{cmd.prefix} diag")
        if refusal is not None:
            await cmd.reply(refusal)
            return
        with self.throttle.running(cmd.room_id):
            await self.run(cmd.room_id, cmd.event_id, verbose)

    def _secrets(self) -> set[str]:
        """The secrets known before the run; checks add what they obtain (tokens, delay ids)."""
        s = self.ctx.settings()
        return {
            x
            for x in (
                s.livekit.api_secret,
                s.auth_service.api_secret,
                s.auth_service.appservice_hs_token,
                str(self.ctx.client.api.token or ""),
            )
            if x
        }

    async def run(self, room_id: RoomID, reply_to: EventID, verbose: bool) -> list[Check]:
        """Post the report as a reply to `reply_to`, run every check, edit the report as they
        finish; return the results."""
        run = RunState(room_id, verbose, time.monotonic(), self._secrets())
        md, hl = render([], verbose, pending=LINES, secrets=run.secrets)
        # The clock check compares the report's server timestamp with these.
        run.sent_before_ms = time.time() * 1000
        run.event_id = await self.ctx.notices.reply(room_id, reply_to, md, hl)
        run.sent_after_ms = time.time() * 1000
        run.changed.clear()

        # /versions and /capabilities once, for every check that reads them.
        run.server_info = asyncio.create_task(self.probe.server_info())
        edit_lock = asyncio.Lock()
        updater = asyncio.create_task(self._updater(run, edit_lock))
        tasks = [
            asyncio.create_task(self.runner.guard(run, names, timeout, partial(group, self.probe)))
            for names, timeout, group in GROUPS
        ]
        try:
            await cancel_and_wait(*tasks, grace_s=OVERALL_TIMEOUT_S)
        finally:
            await cancel_and_wait(run.server_info)
            elapsed = time.monotonic() - run.started
            # The final edit must come after any progress edit still in flight.
            async with edit_lock:
                await cancel_and_wait(updater)
                await self._edit(run, elapsed)
        results = run.ordered()
        self._log_summary(run, results, elapsed)
        return results

    async def _updater(self, run: RunState, lock: asyncio.Lock) -> None:
        while True:
            await run.changed.wait()
            async with lock:
                run.changed.clear()
                await self._edit(run, None)
            await asyncio.sleep(EDIT_INTERVAL_S)

    async def _edit(self, run: RunState, elapsed: float | None) -> None:
        assert run.event_id is not None
        md, hl = render(
            run.ordered(),
            run.verbose,
            pending=run.missing(LINES) if elapsed is None else (),
            elapsed_s=elapsed,
            secrets=run.secrets,
        )
        try:
            await self.ctx.notices.edit(run.room_id, run.event_id, md, hl)
        except Exception as e:
            self.log.warning("could not update the diagnostics report: %s", matrix_error(e))

    def _log_summary(self, run: RunState, results: list[Check], elapsed: float) -> None:
        self.log.info(
            "diagnostics in %s finished in %.1f s: %s",
            run.room_id,
            elapsed,
            ", ".join(f"{sum(1 for r in results if r.status == s)} {s}" for s in ICONS),
        )
        for r in results:
            if r.status in (WARN, FAIL):
                self.log.info(
                    "diagnostics in %s: %s %s: %s",
                    run.room_id,
                    r.status,
                    r.name,
                    redact(f"{r.summary} ({r.cause})", run.secrets),
                )
