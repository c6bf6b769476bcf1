"""The recorder's decryption gate (media/decryption_gate.py): in an encrypted call only
decrypted audio is written; a track published without encryption is dropped and counted."""

from __future__ import annotations

from typing import Any

from rtcbot.media.decryption_gate import DecryptionGate


class Ring:
    """Stands in for FrameKeys: only `decrypting` is asked."""

    def __init__(self, decrypting: set[str]) -> None:
        self._decrypting = decrypting

    def decrypting(self, identity: str) -> bool:
        return identity in self._decrypting


def gate(ring: Any) -> DecryptionGate:
    return DecryptionGate(lambda: ring, 0.1)


def test_an_unencrypted_call_writes_everything() -> None:
    g = gate(None)
    g.track("bob", encrypted=False)
    assert g.allows("bob", "bob") and g.plain_seconds() == {} and g.seconds() == {}


def test_an_encrypted_call_drops_unencrypted_and_undecrypted_audio_and_counts_them() -> None:
    g = gate(Ring({"alice"}))
    g.track("alice", encrypted=True)
    g.track("bob", encrypted=False)  # published without encryption
    g.track("mallory", encrypted=True)  # no key for her
    for _ in range(20):
        assert g.allows("alice", "alice")
        assert not g.allows("bob", "bob")
        assert not g.allows("mallory", "mallory")
    assert g.plain_seconds() == {"bob": 2.0}
    assert g.seconds() == {"mallory": 2.0}


def test_a_track_republished_encrypted_is_written_again() -> None:
    g = gate(Ring({"bob"}))
    g.track("bob", encrypted=False)
    assert not g.allows("bob", "bob")
    g.track("bob", encrypted=True)
    assert g.allows("bob", "bob")
