"""Where the bot sent its own OpenID tokens (net/own_token.py), with a fake clock."""

from __future__ import annotations

from rtcbot.net.own_token import KEEP_S, note_sent, sent_to


def test_a_token_is_remembered_with_its_service_for_a_minute() -> None:
    now = [1000.0]
    note_sent("tok-a", "https://Svc.example/x/", clock=lambda: now[0])
    assert sent_to("tok-a", clock=lambda: now[0]) == "https://svc.example/x"
    assert sent_to("tok-b", clock=lambda: now[0]) is None
    now[0] += KEEP_S + 1
    assert sent_to("tok-a", clock=lambda: now[0]) is None


def test_sent_again_elsewhere_the_last_service_counts() -> None:
    note_sent("tok-c", "https://own.example")
    note_sent("tok-c", "https://eve.example")
    assert sent_to("tok-c") == "https://eve.example"
