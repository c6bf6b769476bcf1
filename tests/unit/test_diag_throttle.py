"""`!call diag`: one run per room at a time, and a cooldown between starts over all rooms."""

from __future__ import annotations

from rtcbot.diagnostics.throttle import DiagThrottle


def test_one_run_per_room_and_a_global_cooldown() -> None:
    now = [100.0]
    throttle = DiagThrottle(cooldown_s=5, clock=lambda: now[0])
    assert throttle.refusal("!a", "!call diag") is None
    with throttle.running("!a"):
        now[0] += 10  # a long run: the cooldown is over, the room is still busy
        busy = throttle.refusal("!a", "!call diag")
        assert busy is not None and "running in this room already" in busy
        assert throttle.refusal("!b", "!call diag") is None  # another room may start
        with throttle.running("!b"):
            pass
    now[0] += 2
    cooling = throttle.refusal("!a", "!call diag")
    assert cooling is not None and "try again in 3 s" in cooling, cooling
    now[0] += 3
    assert throttle.refusal("!a", "!call diag") is None


def test_a_run_that_fails_frees_its_room() -> None:
    throttle = DiagThrottle(cooldown_s=0)
    try:
        with throttle.running("!a"):
            raise RuntimeError("a check blew up")
    except RuntimeError:
        pass
    assert throttle.refusal("!a", "!call diag") is None
