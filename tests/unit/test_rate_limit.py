"""Rate limits with a fake clock: the per-IP buckets of the authorization service and the
delegated leaves' global budget with a fair share per user (rtc/rate_limit.py)."""

from __future__ import annotations

import pytest

from rtcbot.rtc.rate_limit import FairBudget, KeyedLimiter, TokenBucket


def test_a_bucket_spends_its_burst_then_refills_at_its_rate() -> None:
    bucket = TokenBucket.full(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)  # one token comes after 1/rate
    assert bucket.take(0.25) == pytest.approx(0.25)  # a refusal spends nothing
    assert bucket.take(0.5) == 0.0
    assert bucket.take(100.0) == 0.0 and bucket.tokens == pytest.approx(2.0)  # capped at burst


def test_the_clock_going_back_changes_nothing() -> None:
    bucket = TokenBucket.full(rate=1.0, burst=1, now=10.0)
    assert bucket.take(10.0) == 0.0
    assert bucket.take(5.0) > 0  # no tokens minted by an earlier time


def test_each_client_ip_has_its_own_bucket() -> None:
    limiter = KeyedLimiter(rate=1.0, burst=2)
    assert [limiter.take("203.0.113.5", 0.0) for _ in range(3)] == [0.0, 0.0, 1.0]
    assert limiter.take("198.51.100.7", 0.0) == 0.0  # another caller is not affected
    assert limiter.take("203.0.113.5", 1.0) == 0.0


def test_the_limiter_is_bounded_and_forgets_full_buckets_first() -> None:
    limiter = KeyedLimiter(rate=1.0, burst=2, max_keys=3)
    limiter.take("busy", 0.0)
    limiter.take("busy", 0.0)  # empty: must be remembered
    limiter.take("a", 0.0)
    limiter.take("b", 0.0)
    limiter.take("c", 5.0)  # a and b are full again by now: forgotten
    assert len(limiter) <= 3
    assert limiter.take("busy", 5.0) == 0.0


def test_a_lone_user_gets_half_the_budget() -> None:
    budget = FairBudget(rate=1.0, burst=4)
    granted = sum(budget.take("@eve:hs", t / 10) == 0.0 for t in range(100))  # 10 s, 10/s
    # Half the burst at once, then half the rate: about 2 + 10 * 0.5.
    assert 6 <= granted <= 8, granted


def test_one_users_many_jobs_cannot_starve_anothers_restarts() -> None:
    """Eve's 20 jobs ask 10 times a second; Alice's one job asks once every 4 s (a 5 s delay).
    Every one of Alice's restarts goes out at once or within a second."""
    budget = FairBudget(rate=1.0, burst=5)
    alice_waits: list[float] = []
    eve_granted = 0
    for tick in range(600):  # 60 s in steps of 0.1 s
        now = tick / 10
        eve_granted += budget.take("@eve:hs", now) == 0.0
        if tick % 40 == 20:
            alice_waits.append(budget.take("@alice:hs", now))
    assert max(alice_waits) <= 1.0, alice_waits
    assert eve_granted <= 0.5 * 60 + 5  # at most her share (and the first burst)


def test_idle_users_stop_counting_for_the_shares() -> None:
    budget = FairBudget(rate=2.0, burst=2, idle_after_s=10)
    budget.take("@a:hs", 0.0)
    budget.take("@b:hs", 0.0)
    budget.take("@c:hs", 0.0)
    assert budget.users() == 3
    budget.take("@a:hs", 30.0)
    assert budget.users() == 1
