"""Which invites the bot accepts. The stack has one homeserver, so an inviter of another
server cannot be produced there (federation is off): the policy is checked here, and the
config path through a real invite in tests/integration/test_foundation.py."""

from __future__ import annotations

from rtcbot.calls.invites import invite_allowed
from rtcbot.settings import parse_settings

OWN = "bot.example"


def test_by_default_only_the_bots_own_homeserver_may_invite() -> None:
    inv = parse_settings({}).invites
    assert not inv.from_anyone
    args = (inv.allowed_users, inv.allowed_servers, inv.from_anyone)
    assert invite_allowed("@alice:bot.example", OWN, *args)
    assert not invite_allowed("@eve:evil.example", OWN, *args)
    # A look-alike server name is another server.
    assert not invite_allowed("@eve:bot.example.evil.example", OWN, *args)


def test_lists_and_the_switch() -> None:
    users, servers = ("@carol:*.example.org",), ("partner.example",)
    assert invite_allowed("@carol:hs.example.org", OWN, users, servers)
    assert invite_allowed("@dave:partner.example", OWN, users, servers)
    # With a list, the list decides (the own server is not added silently).
    assert not invite_allowed("@alice:bot.example", OWN, users, servers)
    assert invite_allowed("@eve:evil.example", OWN, from_anyone=True)
    settings = parse_settings({"invites.from_anyone": True})
    assert settings.invites.from_anyone
