"""The config section of the bot's own call membership (matrix/publisher.py)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ConfigError, choice, setting, whole

DIALECTS = ("auto", "element_call", "current")


@dataclass(frozen=True)
class MembershipSettings:
    delayed_leave_ms: int = setting(
        8000, whole(1000, 3_600_000), "the delayed leave fires this long after the last heartbeat"
    )
    restart_interval_ms: int = setting(
        4000, whole(200, 3_600_000), "how often the delayed leave is restarted (the heartbeat)"
    )
    expires_ms: int = setting(
        14_400_000, whole(10_000, 7 * 86_400_000), "the membership's own expiry"
    )
    fallback_expires_ms: int = setting(
        60_000, whole(5_000, 86_400_000), "the expiry used where delayed events are unavailable"
    )
    # Which membership the bot publishes: "element_call" (a state event, what Element Call
    # reads), "current" (MSC4143's sticky m.rtc.member, what Element X's coming Rust stack
    # reads) or "auto": the dialect of the call's longest-present member, Element Call's
    # when the bot is alone. Clients of one dialect do not see members of the other.
    dialect: str = setting("auto", choice(*DIALECTS), "the membership dialect the bot answers in")

    def validate(self) -> None:
        if self.restart_interval_ms * 2 > self.delayed_leave_ms:
            raise ConfigError(
                "membership.restart_interval_ms must be at most half of "
                f"membership.delayed_leave_ms (got {self.restart_interval_ms} and "
                f"{self.delayed_leave_ms}), or one late heartbeat would end the bot's membership"
            )
