"""The tests' one polling helper: returns the first truthy value, says what it saw last."""

from __future__ import annotations

import pytest

from tests.stack.eventually import eventually


async def test_returns_the_first_truthy_value_of_a_plain_or_async_check() -> None:
    seen = iter([0, [], "ready"])
    assert await eventually(lambda: next(seen), timeout=5, what="ready", interval=0) == "ready"

    async def answer() -> dict[str, int]:
        return {"n": 1}

    assert await eventually(answer, timeout=5, what="answer", interval=0) == {"n": 1}


async def test_a_failing_check_is_retried_and_its_last_error_named_on_timeout() -> None:
    calls = 0

    def flaky() -> bool:
        nonlocal calls
        calls += 1
        raise ConnectionError("server still starting")

    with pytest.raises(AssertionError) as failed:
        await eventually(flaky, timeout=0, what="the server answers", interval=0)
    assert "the server answers" in str(failed.value)
    assert "ConnectionError: server still starting" in str(failed.value)
    assert calls == 1


async def test_timeout_names_the_last_value() -> None:
    with pytest.raises(AssertionError, match=r"tiles: not within 0 s \(last: \[\]\)"):
        await eventually(list, timeout=0, what="tiles", interval=0)
