"""Rate limits as pure data: token buckets, one per key, and a global budget with fair shares.

Time is passed in (seconds of any monotonic clock); nothing here sleeps or does I/O. Each
`take` answers 0.0 when the request may go now (and spends a token), or how many seconds until
it could (and spends nothing).

- `TokenBucket`: `rate` tokens a second, at most `burst` saved up.
- `KeyedLimiter`: a bucket per key (the authorization service's per-client-IP limit), bounded
  in memory: full buckets are forgotten first, as a fresh one would be full anyway.
- `FairBudget`: one global bucket for everything the bot sends on behalf of others (the
  delegated leaves' restarts and sends share the homeserver's per-IP `rc_delayed_event_mgmt`),
  and a share of it per user: with n users wanting some, each gets at most rate/n and
  burst/n, and a lone user at most half (a newcomer finds the other half unspent), so one
  user's many jobs cannot spend what another user's restarts need.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TokenBucket:
    rate: float  # tokens a second (> 0)
    burst: float  # the most saved up (>= 1)
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> TokenBucket:
        return cls(rate, burst, burst, now)

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = max(self.updated, now)

    def wait(self, now: float) -> float:
        """Seconds until one token is there (0.0: now); spends nothing."""
        self.refill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def take(self, now: float) -> float:
        wait = self.wait(now)
        if wait == 0.0:
            self.tokens -= 1.0
        return wait

    def is_full(self, now: float) -> bool:
        self.refill(now)
        return self.tokens >= self.burst


class KeyedLimiter:
    """A token bucket per key; at most `max_keys` remembered."""

    def __init__(self, rate: float, burst: float, max_keys: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, key: str, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            self._make_room(now)
            bucket = self._buckets[key] = TokenBucket.full(self.rate, self.burst, now)
        return bucket.take(now)

    def _make_room(self, now: float) -> None:
        if len(self._buckets) < self.max_keys:
            return
        for key in [k for k, b in self._buckets.items() if b.is_full(now)]:
            del self._buckets[key]
        while len(self._buckets) >= self.max_keys:  # all busy: the oldest key goes
            del self._buckets[next(iter(self._buckets))]

    def __len__(self) -> int:
        return len(self._buckets)


class FairBudget:
    """A global `rate`/`burst` and, per user, an equal share of it among the users asking."""

    def __init__(self, rate: float, burst: float, idle_after_s: float = 60.0) -> None:
        self.rate = rate
        self.burst = burst
        # A user who has asked nothing for this long no longer counts as wanting a share.
        self.idle_after_s = idle_after_s
        self._global: TokenBucket | None = None
        self._users: dict[str, TokenBucket] = {}
        self._last_ask: dict[str, float] = {}

    def take(self, user: str, now: float) -> float:
        """0.0: send now (spent); else the seconds to wait before asking again."""
        if self._global is None:
            self._global = TokenBucket.full(self.rate, self.burst, now)
        self._last_ask[user] = now
        self._forget_idle(now)
        users = max(2, len(self._last_ask))
        rate, burst = self.rate / users, max(1.0, self.burst / users)
        mine = self._users.get(user)
        if mine is None:
            mine = self._users[user] = TokenBucket.full(rate, burst, now)
        else:
            mine.refill(now)  # at the old share, up to now
            mine.rate, mine.burst = rate, burst
            mine.tokens = min(mine.tokens, burst)
        wait = max(mine.wait(now), self._global.wait(now))
        if wait > 0.0:
            return wait
        mine.tokens -= 1.0
        self._global.tokens -= 1.0
        return 0.0

    def users(self) -> int:
        return len(self._last_ask)

    def _forget_idle(self, now: float) -> None:
        for user in [u for u, t in self._last_ask.items() if now - t > self.idle_after_s]:
            del self._last_ask[user]
            self._users.pop(user, None)
