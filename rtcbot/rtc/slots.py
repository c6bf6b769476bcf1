"""MSC4143 slots (pure): the room state that opens a call slot for "current" clients.

matrix-rust-rtc (`crates/matrix-rtc-core/src/slot.rs`) lets a client join a slot only when the
slot's state event is there and open: `m.rtc.slot` (unstable `org.matrix.msc4143.rtc.slot`),
state key `m.call#room`, `{"status": "open", "application": {"type": "m.call"}}`, plus
`"encryption": {"type": "m.per_member"}` in an encrypted room. It counts a slot as closed when
the event is absent, its status is not "open", or an encrypted room's slot names no
encryption; joining then fails with `SlotClosed`. Element Call 0.26 does not read slots.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

SLOT_TYPES: Final = ("org.matrix.msc4143.rtc.slot", "m.rtc.slot")
ROOM_SLOT: Final = "m.call#room"
PER_MEMBER: Final = "m.per_member"

SlotState = Literal["open", "closed", "missing", "unencrypted"]


def slot_content(open_: bool, encrypted: bool) -> dict[str, Any]:
    """What the bot writes for the room's call slot."""
    content: dict[str, Any] = {
        "status": "open" if open_ else "closed",
        "application": {"type": "m.call"},
    }
    if encrypted:
        content["encryption"] = {"type": PER_MEMBER}
    return content


def slot_state(content: Mapping[str, Any] | None, encrypted: bool) -> SlotState:
    """How a "current" client sees the slot (slot.rs's rules)."""
    if not content:
        return "missing"
    if content.get("status") != "open":
        return "closed"
    encryption = content.get("encryption")
    if encrypted and not (isinstance(encryption, Mapping) and encryption.get("type")):
        return "unencrypted"
    return "open"


def best_state(states: list[SlotState]) -> SlotState:
    """Of the slot under both types, the one a client reading either would find best."""
    for wanted in ("open", "unencrypted", "closed"):
        if wanted in states:
            return wanted
    return "missing"


EXPLAIN: Final[Mapping[SlotState, str]] = {
    "open": "open: clients that read slots (MSC4143 current, Element X's Rust stack) may join",
    "closed": "closed: clients that read slots (MSC4143 current, Element X's Rust stack) "
    "cannot join the call",
    "missing": "not set: clients that read slots (MSC4143 current, Element X's Rust stack) "
    "count it as closed and cannot join the call",
    "unencrypted": "open, but this encrypted room's slot names no encryption: clients that "
    "read slots count it as closed",
}
