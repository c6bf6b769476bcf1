"""The foundation, end to end on the real stack: invites, `!call help`, and media over the SFU."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from rtcbot_stack.stack import Stack
from tests.stack.eventually import eventually
from tests.stack.matrix_user import MatrixUser, body
from tests.stack.peers import dominant_frequency, rms

pytestmark = pytest.mark.stack


async def test_bot_accepts_invite_and_answers_help(alice: MatrixUser, bot_id: str) -> None:
    room = await alice.create_room(invite=[bot_id])
    await alice.wait_for_member(room, bot_id)

    reply = await alice.command(room, "!call help", bot_id)
    content = reply["content"]
    assert content["msgtype"] == "m.notice"
    assert content["format"] == "org.matrix.custom.html"
    assert "<ul>" in content["formatted_body"]
    for cmd in ("!call help", "!call version"):
        assert f"<code>{cmd}" in content["formatted_body"]
    # It is a reply to the command, so people see what it answers.
    assert "m.in_reply_to" in content.get("m.relates_to", {})


async def test_version_and_unknown_command(bot_room: str, alice: MatrixUser, bot_id: str) -> None:
    from rtcbot.version import __version__

    reply = await alice.command(bot_room, "!call version", bot_id)
    assert body(reply) == f"rtcbot {__version__}"

    reply = await alice.command(bot_room, "!call frobnicate", bot_id)
    assert "Unknown command" in body(reply) and "!call help" in body(reply)


async def test_invite_allowlist(stack: Stack, make_user, bot_id: str) -> None:  # type: ignore[no-untyped-def]
    """Only allowed inviters get the bot; the config is changed live through maubot's API."""
    cfg = stack.plugin_config()
    cfg["invites"] = {"allowed_users": [], "allowed_servers": ["example.org"]}
    stack.maubot.put_instance("rtcbot", "dev.rtcbot", bot_id, json.dumps(cfg))
    try:
        mallory = await make_user("mallory")
        room = await mallory.create_room(invite=[bot_id])

        async def declined() -> bool:
            state = await mallory.get_state_event(room, "m.room.member", bot_id)
            return bool(state.get("membership") == "leave")

        await eventually(
            declined,
            timeout=15,
            what="the bot declining an invite from a server that is not allowed",
            interval=0.2,
        )
        assert bot_id not in await mallory.joined_members(room)

        # The documented switch: invites from anyone, whatever the lists say.
        cfg["invites"]["from_anyone"] = True
        stack.maubot.put_instance("rtcbot", "dev.rtcbot", bot_id, json.dumps(cfg))
        room = await mallory.create_room(invite=[bot_id])
        await mallory.wait_for_member(room, bot_id)
    finally:
        stack.maubot.put_instance(
            "rtcbot", "dev.rtcbot", bot_id, json.dumps(stack.plugin_config())
        )

    # With the default (empty) allowlist, a user of the bot's own homeserver is accepted (one
    # Synapse here: an inviter of another server is refused in tests/unit/test_invites.py).
    bob = await make_user("bob")
    room = await bob.create_room(invite=[bot_id])
    await bob.wait_for_member(room, bot_id)


def _ns_links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


def _ns_routes() -> str:
    return subprocess.run(["ip", "route", "show"], capture_output=True, text=True).stdout


async def test_sfu_carries_a_440hz_tone_inside_the_namespace(stack: Stack, make_peer) -> None:  # type: ignore[no-untyped-def]
    ns = stack.settings.netns
    if ns is None:
        pytest.skip("needs the isolated network namespace of `make test`")
    # The namespace has no way out: no default route, only loopback and the veth pair.
    assert "default" not in _ns_routes()
    links = _ns_links()
    names = {line.split(":")[1].strip().split("@")[0] for line in links.splitlines()}
    assert names == {"lo", "rtc0", "rtc1"}

    room = f"tone-{time.monotonic_ns()}"
    a = await make_peer(room, "peer-a")
    b = await make_peer(room, "peer-b", publish=False)
    await a.publish_tone(440)

    await eventually(
        lambda: len(b.samples_from("peer-a")) >= 48_000 * 2,
        timeout=20,
        what="2 s of peer A's audio at peer B",
        interval=0.1,
    )
    samples = b.samples_from("peer-a")
    assert len(samples) >= 48_000 * 2, "peer B received less than 2 s of audio"
    tail = samples[-48_000:]  # the last second, after the jitter buffer settled
    assert rms(tail) > 1000
    assert abs(dominant_frequency(tail) - 440) < 5

    # Media went over the veth addresses of the namespace, nowhere else.
    stats = await b.room.get_rtc_stats()
    addresses = _candidate_addresses(stats)
    assert addresses, "no ICE candidate pair in the stats"
    assert addresses <= {ns.node_ip, ns.peer_ip}, addresses


def _candidate_addresses(stats: object) -> set[str]:
    found: set[str] = set()
    for report_list in (
        getattr(stats, "publisher_stats", []),
        getattr(stats, "subscriber_stats", []),
    ):
        for report in report_list:
            for kind in ("local_candidate", "remote_candidate"):
                if report.HasField(kind):
                    cand = getattr(report, kind).candidate
                    if cand.address:
                        found.add(cand.address)
    return found
