"""Fixtures for tests that need a client with real E2EE: one driver process per session, and
a factory of logged-in users (registered on the stack's Synapse, each with its own device).

Import them into a test module: `from tests.crypto_client.fixtures import crypto_driver,
make_crypto_user`.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from rtcbot_stack.stack import Stack

from .client import CryptoClient, Driver

_counter = itertools.count()
CryptoUserFactory = Callable[..., Awaitable[CryptoClient]]


@pytest.fixture(scope="session")
async def crypto_driver(stack: Stack) -> AsyncIterator[Driver]:
    driver = Driver(stack.settings.state_dir / "crypto_client.log")
    await driver.start()
    try:
        yield driver
    finally:
        await driver.close()


@pytest.fixture
async def make_crypto_user(
    stack: Stack, crypto_driver: Driver
) -> AsyncIterator[CryptoUserFactory]:
    made: list[CryptoClient] = []

    async def factory(name: str = "eve") -> CryptoClient:
        localpart = f"{name}{next(_counter)}_{uuid.uuid4().hex[:6]}"
        device = f"{name.upper()}JS"
        stack.synapse.register(localpart, "pw")
        login = stack.synapse.login(localpart, "pw", device)
        user = await CryptoClient.login(
            crypto_driver, stack.synapse.url, login["user_id"], device, login["access_token"]
        )
        made.append(user)
        return user

    yield factory
    for user in made:
        await user.close()
