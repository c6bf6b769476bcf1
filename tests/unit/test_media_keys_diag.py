"""`!call diag`'s "Call media keys" line, judged from what the key exchange knows (pure)."""

from __future__ import annotations

from rtcbot.diagnostics.media_keys import judge_media_keys
from rtcbot.diagnostics.report import MEDIA_KEYS, OK, WARN, render
from rtcbot.e2ee.keys_report import KeysReport, MemberKeys

ALICE = MemberKeys("@alice:hs", "A1", "@alice:hs:A1", 2, 1, 3.0, "OK", 12.0, 3.5)
BOB_NO_KEY = MemberKeys("@bob:hs", "B1", "@bob:hs:B1", 0, None, None, "MISSING_KEY", 8.0, 8.0)
CAROL_WRONG = MemberKeys(
    "@carol:hs", "C1", "@carol:hs:C1", 1, 0, 20.0, "DECRYPTION_FAILED", 5.0, None
)


def report(*members: MemberKeys, own_state: str | None = "OK") -> KeysReport:
    return KeysReport("!r:hs", 1, 1, list(members), [("@dave:hs", "D1")], own_state)


def test_no_encrypted_call_is_fine() -> None:
    check = judge_media_keys(None)
    assert check.name == MEDIA_KEYS and check.status == OK
    assert "no encrypted call" in check.summary


def test_everyone_decrypting() -> None:
    check = judge_media_keys(report(ALICE))
    assert check.status == OK, check
    assert "keys from 1 of 1" in check.summary and "decrypting 1 of 1" in check.summary
    assert "my key index 1" in check.summary and "1 rotation" in check.summary
    # --verbose: one line per member device, and the keys held for a device not in the call.
    assert any(
        "@alice:hs (A1): 2 keys, last index 1 3 s ago; decryption OK for 12 s" in d
        for d in check.details
    ), check.details
    assert any("@dave:hs (D1)" in d and "held" in d for d in check.details), check.details


def test_members_without_a_key_or_with_a_wrong_one_are_named() -> None:
    check = judge_media_keys(report(ALICE, BOB_NO_KEY, CAROL_WRONG))
    assert check.status == WARN
    assert "keys from 2 of 3" in check.summary and "decrypting 1 of 3" in check.summary
    assert "@bob:hs (B1): MISSING_KEY" in check.summary, check.summary
    assert "@carol:hs (C1)" in check.summary and "DECRYPTION_FAILED" in check.summary
    assert "Olm" in check.cause and "rejoin" in check.fix
    assert any("@bob:hs (B1): no key received" in d for d in check.details), check.details


def test_the_bots_own_sender_without_a_key_is_a_warning() -> None:
    check = judge_media_keys(report(ALICE, own_state="MISSING_KEY"))
    assert check.status == WARN and "my sender is MISSING_KEY" in check.summary


def test_ids_cannot_inject_markup() -> None:
    evil = MemberKeys("@e`v*il:hs", "D `x` **y**", "id", 0, None, None, None, None, None)
    check = judge_media_keys(report(evil))
    md, html = render([check], verbose=True)
    assert "@evil:hs (Dxy)" in md, md
    assert "<code>x</code>" not in html and "<strong>y</strong>" not in html, html
