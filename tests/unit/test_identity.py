"""LiveKit room/identity hashing (MSC4195 vectors) and unverified JWT claim decoding."""

from __future__ import annotations

import base64
import json

import pytest

from rtcbot.rtc.identity import (
    DEFAULT_SLOT_ID,
    JwtDecodeError,
    decode_jwt_claims,
    legacy_identity,
    livekit_identity,
    livekit_room_alias,
)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _jwt(payload: object) -> str:
    header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
    return f"{header}.{_b64url(json.dumps(payload).encode())}.c2lnbmF0dXJl"


def test_msc4195_room_alias_vector() -> None:
    assert (
        livekit_room_alias("!roomid:example.com", "slot1234")
        == "O8437W3+jmzMVjoIP3tNwbm+XxHQk2iKpOA7aqw3qSc"
    )


def test_msc4195_identity_vector() -> None:
    assert (
        livekit_identity("@alice:example.com", "DEVICE123", "memberABC")
        == "J+T45tGruxc+HrUOqJJlyQSV33m728Cme4+vt8/SWrU"
    )


def test_default_slot_is_the_call_slot() -> None:
    assert DEFAULT_SLOT_ID == "m.call#ROOM"
    assert livekit_room_alias("!r:x") == livekit_room_alias("!r:x", "m.call#ROOM")
    assert livekit_room_alias("!r:x") != livekit_room_alias("!r:x", "m.call#OTHER")


def test_hash_is_unpadded_standard_base64_of_sha256() -> None:
    alias = livekit_room_alias("!a:b", "c")
    assert "=" not in alias and len(alias) == 43  # 32 bytes → 43 chars without padding
    assert set(alias) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def test_non_ascii_is_hashed_as_utf8_not_escaped() -> None:
    import hashlib

    expected = (
        base64.b64encode(hashlib.sha256('["!räum:ex.org","m.call#ROOM"]'.encode()).digest())
        .decode()
        .rstrip("=")
    )
    assert livekit_room_alias("!räum:ex.org") == expected


def test_identity_parts_cannot_be_shifted() -> None:
    # JSON array framing keeps ("a:b","c") and ("a","b:c") apart, unlike plain joining.
    assert livekit_identity("@a:b", "c", "d") != livekit_identity("@a", "b:c", "d")


def test_legacy_identity() -> None:
    assert legacy_identity("@alice:example.com", "DEVICE123") == "@alice:example.com:DEVICE123"


def test_decode_jwt_claims_reads_payload() -> None:
    claims = decode_jwt_claims(_jwt({"sub": "me", "video": {"room": "r"}, "exp": 5}))
    assert claims == {"sub": "me", "video": {"room": "r"}, "exp": 5}


def test_decode_jwt_claims_unicode_payload() -> None:
    assert decode_jwt_claims(_jwt({"name": "Jürgen ✓"}))["name"] == "Jürgen ✓"


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "not a jwt",
        "a.b",
        "a.b.c.d",
        "a..c",
        "a.!!!!.c",
        "a.é.c",
        "a.x.c",  # one base64 char cannot be decoded
        "a." + _b64url(b"\xff\xfe\x00") + ".c",  # not UTF-8
        "a." + _b64url(b"{not json") + ".c",
        "a." + _b64url(b"[1,2,3]") + ".c",  # JSON, but not an object
        "a." + _b64url(b'"text"') + ".c",
        "a." + _b64url(b"[" * 100_000) + ".c",  # too deep for the parser
    ],
)
def test_decode_jwt_claims_garbage_raises_specific_error(garbage: str) -> None:
    with pytest.raises(JwtDecodeError) as info:
        decode_jwt_claims(garbage)
    assert isinstance(info.value, ValueError)
    if garbage:
        assert garbage not in str(info.value)


def test_decode_jwt_claims_non_string() -> None:
    with pytest.raises(JwtDecodeError):
        decode_jwt_claims(None)  # type: ignore[arg-type]
    with pytest.raises(JwtDecodeError):
        decode_jwt_claims(b"a.b.c")  # type: ignore[arg-type]


def test_decode_error_never_quotes_the_token() -> None:
    secret_payload = _b64url(b'{"secret": "hunter2"') + "!"
    token = f"eyJhbGciOiJIUzI1NiJ9.{secret_payload}.sig"
    with pytest.raises(JwtDecodeError) as info:
        decode_jwt_claims(token)
    assert "hunter2" not in str(info.value) and secret_payload not in str(info.value)
