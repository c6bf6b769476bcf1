"""One way for tests to wait for something the real stack does in its own time.

A test that waits polls what a person (or the server) can see until it holds; on timeout it fails
with what it saw last, so a red run says why. The timeout is a bound on a hung stack, never a
timing goal (those live in bench/)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    *,
    timeout: float,
    what: str,
    interval: float = 0.25,
    failure: type[Exception] = AssertionError,
) -> T:
    """Call `check` (plain or async) until it returns something truthy, and return that.

    An exception from `check` counts as "not yet" (the server may still be starting), but an
    AssertionError fails at once: the check found something wrong, not something late. After
    `timeout` seconds `failure` (AssertionError; TimeoutError where callers expect that) names
    `what` and the last value or exception."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
            if inspect.isawaitable(value):
                value = await value
            last = value
            if value:
                return value  # type: ignore[return-value]
        except AssertionError:
            raise
        except Exception as e:  # not yet; reported if it is the last word
            last = e
        if time.monotonic() > deadline:
            detail = (
                f"{type(last).__name__}: {last}" if isinstance(last, Exception) else repr(last)
            )
            raise failure(f"{what}: not within {timeout:g} s (last: {detail})")
        await asyncio.sleep(interval)
