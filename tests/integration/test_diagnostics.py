"""`!call diag` on the real stack: healthy, low power levels, a broken SFU URL, the
authorization service switched off, a homeserver without delayed events — and never a secret.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rtcbot.diagnostics import (
    AUTH_ENDPOINTS,
    AUTH_HEALTH,
    DELAYED,
    ICONS,
    JWT,
    LINES,
    OPENID,
    OWN_MEMBERSHIP,
    PERM_BOT,
    PERM_MEMBERS,
    ROUND_TRIP,
    SFU,
    STATE_KEY,
)
from rtcbot.diagnostics.report import FUNCTIONAL, SLOT
from rtcbot_stack.stack import Stack, free_port
from tests.integration.test_own_membership import AltServer, _alt_server
from tests.stack.eventually import eventually
from tests.stack.matrix_user import MatrixUser, body, is_reply_to

pytestmark = pytest.mark.stack

STATUS_OF_ICON = {icon: status for status, icon in ICONS.items()}


@dataclass
class Report:
    body: str  # plain text of the final edit
    html: str
    contents: list[dict[str, Any]] = field(default_factory=list)  # every version, raw
    wall_s: float = 0.0

    def line(self, name: str) -> tuple[str, list[str]]:
        """(status, detail lines) of one check."""
        lines = self.body.splitlines()
        for i, text in enumerate(lines):
            for icon, status in STATUS_OF_ICON.items():
                if text.startswith(f"* {icon} {name}: "):
                    sub = []
                    for more in lines[i + 1 :]:
                        if not more.startswith("  * "):
                            break
                        sub.append(more[4:])
                    return status, sub
        raise AssertionError(f"no line {name!r} in the report:\n{self.body}")

    def status(self, name: str) -> str:
        return self.line(name)[0]

    def text(self, name: str) -> str:
        lines = self.body.splitlines()
        head = next(t for t in lines if re.match(rf"\* \S+ {re.escape(name)}: ", t))
        return "\n".join([head, *self.line(name)[1]])

    def statuses(self) -> dict[str, str]:
        return {name: self.status(name) for name in LINES}

    @property
    def finished_s(self) -> float:
        m = re.search(r"Finished in ([\d.]+) s", self.body)
        assert m, self.body
        return float(m.group(1))


COOLING = "try again in"  # the answer while diag cools down (diagnostics/throttle.py)


async def report_started(
    user: MatrixUser, room: str, bot_id: str, text: str = "!call diag", timeout: float = 30
) -> dict[str, Any]:
    """The report's first message. Runs are a few seconds apart over all rooms (the bot's
    rate limits): while the bot says to try again, try again."""
    deadline = time.monotonic() + timeout
    while COOLING in body(original := await user.command(room, text, bot_id, timeout=timeout)):
        assert time.monotonic() < deadline, body(original)
        await asyncio.sleep(0.5)
    return original


async def diag(
    user: MatrixUser, room: str, bot_id: str, text: str = "!call diag", timeout: float = 30
) -> Report:
    """Send the command; wait for the report's final edit (the one saying "Finished in")."""
    start = time.monotonic()
    original = await report_started(user, room, bot_id, text, timeout)
    orig_id = original["event_id"]

    async def finished() -> Report | None:
        events = await user.messages(room, 100)
        edits = [
            e
            for e in events
            if e.get("sender") == bot_id
            and (e.get("content", {}).get("m.relates_to") or {}).get("rel_type") == "m.replace"
            and e["content"]["m.relates_to"].get("event_id") == orig_id
        ]
        if edits:
            newest = edits[-1]["content"]["m.new_content"]
            if "Finished in" in newest.get("body", ""):
                return Report(
                    body=newest["body"],
                    html=newest.get("formatted_body", ""),
                    contents=[original["content"], *(e["content"] for e in edits)],
                    wall_s=time.monotonic() - start,
                )
        return None

    return await eventually(
        finished,
        timeout=max(0.0, timeout - (time.monotonic() - start)),
        what=f"the finished report ({body(original)})",
        interval=0.2,
        failure=TimeoutError,
    )


@contextmanager
def plugin_config(stack: Stack, bot_id: str, **changes: dict[str, Any]) -> Iterator[None]:
    """Change the live plugin config (sections merged), restore it afterwards."""
    cfg = stack.plugin_config()
    for section, values in changes.items():
        cfg[section] = {**cfg.get(section, {}), **values}
    stack.maubot.put_instance("rtcbot", "dev.rtcbot", bot_id, json.dumps(cfg))
    try:
        yield
    finally:
        stack.maubot.put_instance(
            "rtcbot", "dev.rtcbot", bot_id, json.dumps(stack.plugin_config())
        )


# -- healthy ---------------------------------------------------------------------------------
async def test_healthy_stack_every_line_is_ok(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str
) -> None:
    # Not in a call: everything passes, the bot's own membership does not apply.
    report = await diag(alice, bot_room, bot_id)
    statuses = report.statuses()
    assert statuses.pop(OWN_MEMBERSHIP) == "skip", report.body
    # No MSC4143 slot in a new room: Element X's coming stack could not join (a warning; see
    # tests/integration/test_slots.py for the slot opened).
    assert statuses.pop(SLOT) == "warn", report.body
    # The bot has level 0 here: it cannot list itself as a service member (MSC4171).
    assert statuses.pop(FUNCTIONAL) == "warn", report.body
    assert set(statuses.values()) == {"ok"}, report.body
    assert "accepts the bot's key" in report.text(STATE_KEY)

    # In the call, with the slot open and the bot a service member (it lists itself once it
    # has the level): every single line is ✅, within the time budget.
    levels = await alice.get_state_event(bot_room, "m.room.power_levels")
    levels.setdefault("users", {})[bot_id] = 50
    await alice.put_state(bot_room, "m.room.power_levels", "", levels)
    opened = await alice.command(bot_room, "!call slot open", bot_id)
    assert "is now open" in body(opened), body(opened)
    await alice.start_call(bot_room, bot_id)
    reply = await alice.command(bot_room, "!call join", bot_id)
    assert "Joined" in body(reply), body(reply)
    try:
        report = await diag(alice, bot_room, bot_id)
        assert set(report.statuses().values()) == {"ok"}, report.body
        assert "visible" in report.text(OWN_MEMBERSHIP)
        assert report.finished_s <= 10, report.body
        assert report.wall_s <= 12, report.wall_s
        print(
            f"healthy !call diag: finished in {report.finished_s} s (wall {report.wall_s:.2f} s)"
        )
        # The service and the SFU named are the stack's own.
        verbose = await diag(alice, bot_room, bot_id, "!call diag --verbose")
        assert set(verbose.statuses().values()) == {"ok"}, verbose.body
        assert stack.auth_service_url in verbose.text(AUTH_HEALTH)
        assert stack.livekit.url in verbose.text(SFU)
        assert "schedule" in verbose.text(ROUND_TRIP) and "cancel" in verbose.text(ROUND_TRIP)
    finally:
        await alice.command(bot_room, "!call leave", bot_id)


# -- power levels ----------------------------------------------------------------------------
async def test_one_run_per_room_and_a_cooldown_over_all_rooms(
    bot_room: str, alice: MatrixUser, bot_id: str
) -> None:
    """Each run spends the bot's own delayed-event rate limit (review M4): a second request
    in the room, and one in another room right after, get a short answer instead of a run."""
    other = await alice.create_room(invite=[bot_id])
    await alice.wait_for_member(other, bot_id)
    first = await report_started(alice, bot_room, bot_id)  # an earlier test's run may cool down
    sent = [(room, await alice.send_text(room, "!call diag")) for room in (bot_room, other)]
    answers = [
        body(await alice.wait_for(room, is_reply_to(bot_id, event_id), 30, after=event_id))
        for room, event_id in sent
    ]
    print(f"\n[diag] right after a run started: {answers}")
    assert "Checking" in body(first), body(first)
    # Still running (or, a fast run, already over): either way not again so soon.
    assert "running in this room already" in answers[0] or COOLING in answers[0], answers
    assert COOLING in answers[1] and "rate limits" in answers[1], answers


async def test_power_levels_too_low_for_members_and_bot(alice: MatrixUser, bot_id: str) -> None:
    room = await alice.create_room(invite=[bot_id], call_member_level=None)  # default: 50
    await alice.wait_for_member(room, bot_id)
    report = await diag(alice, room, bot_id)
    for name in (PERM_BOT, PERM_MEMBERS):
        status, sub = report.line(name)
        assert status == "fail", report.body
        assert any(s.startswith("Cause:") and "50" in s for s in sub), report.body
        assert any(s.startswith("Fix:") and "Element Call" in s for s in sub), report.body
    assert "level 50" in report.text(PERM_MEMBERS)
    status, sub = report.line(STATE_KEY)
    assert status == "fail" and "power level" in report.text(STATE_KEY), report.body
    # Delayed events themselves are fine in that room (power levels apply when they fire).
    assert report.status(ROUND_TRIP) == "ok", report.body


# -- authorization service and SFU -----------------------------------------------------------
async def test_service_with_wrong_livekit_url(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str
) -> None:
    wrong = f"ws://127.0.0.1:{free_port()}"
    # Full access: the service must create the LiveKit room and cannot.
    with plugin_config(stack, bot_id, auth_service={"livekit_url": wrong}):
        report = await diag(alice, bot_room, bot_id)
    status, sub = report.line(OPENID)
    assert status == "fail", report.body
    assert any("Cause:" in s and "LiveKit" in s for s in sub), report.body
    assert any("Fix:" in s and "auth_service.livekit_url" in s for s in sub), report.body
    assert report.status(JWT) == "skip"
    # The SFU itself is fine: tested with a token the bot mints from its own key.
    assert report.status(SFU) == "ok" and "minted" in report.text(SFU), report.body

    # Restricted access: the service hands out the token without touching LiveKit, and
    # LiveKit is then unreachable at the URL it names.
    with plugin_config(
        stack,
        bot_id,
        # A list without the bot's homeserver ([] would mean "the bot's own homeserver").
        auth_service={"livekit_url": wrong, "full_access_homeservers": ["other.example"]},
    ):
        report = await diag(alice, bot_room, bot_id)
    assert report.status(OPENID) == "ok", report.body
    status, sub = report.line(SFU)
    assert status == "fail" and wrong in report.text(SFU), report.body
    assert any(s.startswith("Cause:") for s in sub) and any(s.startswith("Fix:") for s in sub)

    # Restored: healthy again.
    report = await diag(alice, bot_room, bot_id)
    assert report.status(OPENID) == "ok" and report.status(SFU) == "ok", report.body


async def test_authorization_service_disabled(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str
) -> None:
    with plugin_config(stack, bot_id, auth_service={"enabled": False}):
        report = await diag(alice, bot_room, bot_id)
    for name in (AUTH_HEALTH, AUTH_ENDPOINTS, OPENID):
        status, sub = report.line(name)
        assert status == "fail", report.body
        assert any(s.startswith("Cause:") for s in sub), report.body
        assert any(s.startswith("Fix:") for s in sub), report.body
    assert "disabled" in report.text(AUTH_HEALTH)
    assert "auth_service.enabled" in report.text(AUTH_HEALTH)
    assert report.status(JWT) == "skip"


async def test_authorization_service_down(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str
) -> None:
    # The bot is configured to use a service nobody listens for.
    down = f"http://127.0.0.1:{free_port()}"
    with plugin_config(stack, bot_id, livekit={"service_url": down}):
        report = await diag(alice, bot_room, bot_id, "!call diag --verbose")
    for name in (AUTH_HEALTH, AUTH_ENDPOINTS, OPENID):
        status, sub = report.line(name)
        assert status == "fail", report.body
        assert any(s.startswith("Cause:") for s in sub), report.body
    assert "unreachable" in report.text(AUTH_HEALTH) and down in report.text(AUTH_HEALTH)
    assert "livekit.service_url" in report.text(AUTH_HEALTH)  # where the URL came from
    assert report.finished_s <= 10


# -- homeserver without delayed events -------------------------------------------------------
@pytest.fixture
async def nodelay_server(stack: Stack, tmp_path: Path) -> AsyncIterator[AltServer]:
    alt = await _alt_server(stack, tmp_path, "diagnodelay", None)
    try:
        yield alt
    finally:
        stack.maubot.api("DELETE", "/instance/rtcbot-diagnodelay")
        stack.maubot.api("DELETE", f"/client/{alt.bot_id}")
        await alt.user.close()
        alt.synapse.stop()


async def test_homeserver_without_delayed_events(nodelay_server: AltServer) -> None:
    user, bot_id = nodelay_server.user, nodelay_server.bot_id
    room = await user.create_room(invite=[bot_id])
    await user.wait_for_member(room, bot_id)
    report = await diag(user, room, bot_id)
    status, sub = report.line(DELAYED)
    assert status == "fail", report.body
    assert any(s.startswith("Cause:") and "max_event_delay_duration" in s for s in sub)
    assert any(s.startswith("Fix:") and "max_event_delay_duration: 24h" in s for s in sub)
    status, sub = report.line(ROUND_TRIP)
    assert status == "fail" and any("disallowed" in s for s in sub), report.body
    assert report.finished_s <= 10


# -- secrets ---------------------------------------------------------------------------------
def _all_text(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


async def test_no_secret_in_any_report_or_the_log(
    stack: Stack, bot_room: str, alice: MatrixUser, bot_id: str
) -> None:
    secrets = {
        "livekit api_secret": stack.secrets["livekit_api_secret"],
        "bot access token": str(stack.bot["access_token"]),
    }
    reports = [
        await diag(alice, bot_room, bot_id, "!call diag --verbose"),
        await diag(alice, bot_room, bot_id),
    ]
    with plugin_config(stack, bot_id, auth_service={"enabled": False}):
        reports.append(await diag(alice, bot_room, bot_id, "!call diag --verbose"))
    with plugin_config(
        stack,
        bot_id,
        auth_service={
            "livekit_url": f"ws://127.0.0.1:{free_port()}",
            "full_access_homeservers": ["other.example"],  # the bot restricted
        },
    ):
        reports.append(await diag(alice, bot_room, bot_id, "!call diag --verbose"))
    assert reports[0].status(JWT) == "ok"  # a JWT was really handled
    # Every version of every report, plain and HTML, as the room stores them.
    texts = [_all_text(c) for r in reports for c in r.contents]
    for text in texts:
        for what, secret in secrets.items():
            assert secret not in text, f"{what} leaked into a report"
        assert "eyJ" not in text, "a JWT leaked into a report"
        assert "syt_" not in text and "syd_" not in text
    log = stack.settings.state_dir / "maubot" / "maubot.log"
    if log.exists():
        diag_lines = [
            line for line in log.read_text(errors="replace").splitlines() if "diagnostics" in line
        ]
        assert diag_lines, "the diagnostics left no trace in the log"
        for line in diag_lines:
            assert "eyJ" not in line and "access_token=" not in line
            for secret in secrets.values():
                assert secret not in line
