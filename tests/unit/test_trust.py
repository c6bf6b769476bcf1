"""Which URL may receive the bot's OpenID token (rtc/trust.py): exactly the trusted ones."""

from __future__ import annotations

import pytest

from rtcbot.rtc.trust import canonical_service, trusted_service

OWN = "https://matrix.example.org/_matrix/maubot/plugin/rtcbot"
PARTNER = "https://rtc.partner.example:8443/livekit/jwt/"
LOCAL = "http://127.0.0.1:29316/_matrix/maubot/plugin/rtcbot-sfu2"
TRUSTED = [OWN, PARTNER, LOCAL]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (OWN, OWN),
        (OWN + "/", OWN),
        ("HTTPS://Matrix.Example.ORG:443/_matrix/maubot/plugin/rtcbot", OWN),
        ("https://rtc.partner.example:8443/livekit/jwt", PARTNER.rstrip("/")),
        (LOCAL, LOCAL),
    ],
)
def test_a_trusted_service_in_any_spelling_gets_the_token(url: str, expected: str) -> None:
    assert trusted_service(url, TRUSTED) == expected


@pytest.mark.parametrize(
    "url",
    [
        "https://eve.example/svc",  # a member's own service
        "http://127.0.0.1:29316/_matrix/maubot/v1/plugins#",  # SSRF probe on a trusted host
        "http://127.0.0.1:29316/_matrix/maubot/plugin/rtcbot-sfu2#",  # cuts the path off
        "http://127.0.0.1:29316/_matrix/maubot/plugin/rtcbot-sfu2?x=",
        "http://127.0.0.1:29316/_matrix/maubot/plugin/rtcbot-sfu2/../../v1/plugins",
        "http://127.0.0.1:29316/_matrix/maubot/plugin",  # a prefix of a trusted one
        "http://127.0.0.1:29317/_matrix/maubot/plugin/rtcbot-sfu2",  # another port
        "https://127.0.0.1:29316/_matrix/maubot/plugin/rtcbot-sfu2",  # another scheme
        "http://eve@127.0.0.1:29316/_matrix/maubot/plugin/rtcbot-sfu2",
        "https://matrix.example.org/_matrix/maubot/plugin/rtcbot/x",
        "https://matrix.example.org.evil/_matrix/maubot/plugin/rtcbot",
        "ftp://matrix.example.org/_matrix/maubot/plugin/rtcbot",
        "https://matrix.example.org/_matrix/maubot/plugin/rtcbot\n",
        "",
    ],
)
def test_anything_else_gets_nothing(url: str) -> None:
    assert trusted_service(url, TRUSTED) is None


def test_nothing_is_trusted_by_default() -> None:
    assert trusted_service(OWN, []) is None
    assert trusted_service(OWN, ["", "not a url"]) is None


def test_canonical_form() -> None:
    assert canonical_service("https://[::1]:443/x/") == "https://[::1]/x"
    assert canonical_service("http://h:80") == "http://h"
    assert canonical_service("http://h:99999/") is None
    assert canonical_service("https:///path") is None
