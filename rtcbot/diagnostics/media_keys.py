"""Call media keys: when the bot is in an end-to-end encrypted call here, did each member's
Element Call send it a media key, can the bot decrypt each one's media, and does its own
sender have a key (e2ee/call_keys.py, media/frame_keys.py)."""

from __future__ import annotations

import re

from ..e2ee.keys_report import KeysReport, MemberKeys
from ..media.frame_keys import DECRYPTING
from .probe import Probe, RunState
from .report import MEDIA_KEYS, OK, WARN, Check, fmt_ms

NO_KEY_CAUSE = (
    "Element Call sends its media key only to the devices of the call memberships it sees, "
    "with Olm: a member whose client has no Olm session with the bot's device, or does not "
    "see the bot's membership, never sends one. Until it does, the bot hears silence from it."
)
NO_KEY_FIX = (
    "Ask that member to leave and rejoin the call (their client sends its key again); check "
    "that the bot's membership names its real device (the `End-to-end encryption` line)."
)
OWN_CAUSE = (
    "The bot's own sender has no key at the index it encrypts with: it sends nothing, and "
    "nobody hears it."
)


def _who(user_id: str, device_id: str) -> str:
    """A device for the report; its renderer reads `code` and **bold**, so IDs (which their
    owners chose) lose those characters and any whitespace."""

    def clean(text: str) -> str:
        return re.sub(r"[`*\s]", "", text)[:80]

    return f"{clean(user_id)} ({clean(device_id)})"


def _age(seconds: float | None) -> str:
    return "never" if seconds is None else f"{fmt_ms(seconds * 1000)} ago"


def _member_line(m: MemberKeys) -> str:
    who = _who(m.user_id, m.device_id)
    keys = (
        f"{m.keys} key{'s' if m.keys != 1 else ''}, last index {m.last_index} {_age(m.last_age_s)}"
        if m.keys
        else "no key received"
    )
    state = (
        f"decryption {m.state} for {fmt_ms((m.state_for_s or 0) * 1000)}"
        if m.state
        else "no media decrypted yet"
    )
    return f"{who}: {keys}; {state}; my key sent {_age(m.own_key_sent_s)}"


def judge_media_keys(report: KeysReport | None) -> Check:
    """The report's line from what the key exchange knows (pure)."""
    if report is None:
        return Check(MEDIA_KEYS, OK, "the bot takes part in no encrypted call here")
    members = report.members
    keyed = [m for m in members if m.keys]
    decrypting = [m for m in members if m.state in DECRYPTING]
    details = tuple(_member_line(m) for m in members)
    if report.waiting:
        held = ", ".join(_who(u, d) for u, d in report.waiting[:10])
        details += (f"keys held until their membership appears: {held}",)
    own = (
        f"my key index {report.own_index}"
        if report.own_index is not None
        else "no key of my own yet"
    )
    summary = (
        f"encrypted call: keys from {len(keyed)} of {len(members)} member devices, "
        f"decrypting {len(decrypting)} of {len(members)}; {own}, "
        f"{report.rotations} rotation{'s' if report.rotations != 1 else ''}"
    )
    if report.own_state is not None and report.own_state not in DECRYPTING:
        return Check(
            MEDIA_KEYS,
            WARN,
            f"{summary}; my sender is {report.own_state}",
            OWN_CAUSE,
            "This is a bug in rtcbot; the bot's log has the key exchange.",
            details,
        )
    lacking = [m for m in members if m.state not in DECRYPTING]
    if lacking:
        names = ", ".join(
            _who(m.user_id, m.device_id)
            + (f": {m.state}" if m.state else "" if m.keys else ": no key")
            for m in lacking[:5]
        )
        return Check(
            MEDIA_KEYS,
            WARN,
            f"{summary}; not decrypting {names}",
            NO_KEY_CAUSE,
            NO_KEY_FIX,
            details,
        )
    return Check(MEDIA_KEYS, OK, summary, details=details)


async def media_keys_check(probe: Probe, run: RunState) -> None:
    report = probe.keys_report(str(run.room_id)) if probe.keys_report else None
    run.put(judge_media_keys(report))
