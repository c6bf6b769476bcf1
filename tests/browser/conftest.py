"""Fixtures for tests with the real Element Call in Chromium (see element_call.py).

- `element_call_install` (session, autouse): node, /usr/bin/chromium, playwright-core and the
  pinned Element Call build are there, or an error naming what is missing (never a skip);
- `element_call_server` (session): the build on 127.0.0.1 with a config.json for the stack's
  Synapse (the LiveKit transport comes from Synapse's MSC4143 transports endpoint);
- `chromium` (session): one Node driver and the Chromium browsers (one per fake-mic tone);
- `element_call` (per test): `await element_call(user, room_id, tone_hz=440, rtc_mode=None,
  join=True, connection_stats=False)` → an `ElementCallPage` in the room's call; every page
  is closed at the end of the test (the browser stays for the next test).
  `rtc_mode="legacy"` opens Element Call 0.25.0 (npm alias `element-call-legacy-mode`), the
  last build with that mode (0.26 knows only `compatibility` and `matrix_2_0`).
  `livekit_service_url=…` makes the page publish on that transport instead of the one Synapse
  advertises (EC's `custom-livekit-url` setting): multi-SFU calls;
- `second_transport` (session, second_sfu.py): a second LiveKit and a second rtcbot as its
  authorization service, for multi-SFU calls.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from rtcbot_stack.element_call_web import StaticServer, element_call_config
from rtcbot_stack.stack import Stack
from rtcbot_stack.synapse import SERVER_NAME
from tests.browser.element_call import (
    Chromium,
    Driver,
    ElementCallPage,
    HarnessMissing,
    Installation,
    find_installation,
    open_page,
    room_url,
    session_storage,
)
from tests.browser.second_sfu import (  # second_transport: the fixture, registered here
    extra_transports,
    second_transport,  # noqa: F401
    stack_transport,
)
from tests.stack.matrix_user import MatrixUser


@pytest.fixture(scope="session", autouse=True)
def element_call_install() -> Installation:
    """Autouse, so a missing browser fails the tests here before the stack is started."""
    try:
        return find_installation()
    except HarnessMissing as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def element_call_server(
    stack: Stack, element_call_install: Installation
) -> Iterator[StaticServer]:
    config = element_call_config(stack.synapse.url, SERVER_NAME)
    server = StaticServer(element_call_install.dist, config)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
async def chromium(
    element_call_install: Installation, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Chromium]:
    work = Path(tmp_path_factory.mktemp("chromium"))
    driver = Driver(element_call_install, work / "driver.log")
    await driver.start()
    try:
        yield Chromium(driver, work)
    finally:
        await driver.close()


LEGACY_PACKAGE = "element-call-legacy-mode"  # npm alias of @element-hq/element-call-embedded
LEGACY_VERSION = "0.25.0"


@pytest.fixture(scope="session")
def element_call_legacy_server(
    stack: Stack, element_call_install: Installation
) -> Iterator[StaticServer]:
    """Element Call 0.25.0 for the `legacy` mode (the one build difference the tests need)."""
    pkg = element_call_install.dist.parents[2] / LEGACY_PACKAGE
    version = json.loads((pkg / "package.json").read_text()).get("version")
    if version != LEGACY_VERSION:
        pytest.fail(f"{pkg} is {version}, not {LEGACY_VERSION}: run `npm ci`", pytrace=False)
    config = element_call_config(stack.synapse.url, SERVER_NAME)
    server = StaticServer(pkg / "dist", config)
    try:
        yield server
    finally:
        server.close()


ElementCallFactory = Callable[..., Awaitable[ElementCallPage]]
# EC's per-browser setting for the transport to publish on (JSON string in localStorage).
CUSTOM_LIVEKIT_URL = "matrix-setting-custom-livekit-url"


def _identity_resolver(stack: Stack, room_id: str) -> Callable[[], Awaitable[dict[str, str]]]:
    """Track sid and participant sid → identity, from every SFU's view of the call's room:
    the stack's and any extra transport running (second_sfu.py), as a page subscribes on
    each SFU where somebody publishes (sids are per SFU, so the maps do not collide)."""

    async def resolve() -> dict[str, str]:
        out: dict[str, str] = {}
        for transport in [stack_transport(stack), *extra_transports()]:
            out.update(await transport.identities(room_id))
        return out

    return resolve


@pytest.fixture
async def element_call(
    stack: Stack,
    chromium: Chromium,
    element_call_server: StaticServer,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> AsyncIterator[ElementCallFactory]:
    pages: list[ElementCallPage] = []

    async def open_call(
        user: MatrixUser,
        room_id: str,
        *,
        tone_hz: float = 440.0,
        rtc_mode: str | None = None,
        join: bool = True,
        connection_stats: bool = False,
        timeout: float = 30,
        livekit_service_url: str | None = None,
    ) -> ElementCallPage:
        t0 = time.monotonic()
        browser = await chromium.browser_for_tone(tone_hz)
        server = element_call_server
        if rtc_mode == "legacy":
            server = request.getfixturevalue("element_call_legacy_server")
        storage = session_storage(
            user.user_id,
            user.device_id,
            user.access_token,
            None if rtc_mode == "legacy" else rtc_mode,
            connection_stats,
        )
        if rtc_mode == "legacy":
            storage["matrix-setting-matrix-rtc-mode"] = json.dumps("legacy")
        if livekit_service_url is not None:
            # EC 0.26.1 (LocalTransport.ts): this setting replaces the homeserver's
            # rtc/transports as the transport the page advertises and publishes on.
            storage[CUSTOM_LIVEKIT_URL] = json.dumps(livekit_service_url)
        page = await open_page(
            chromium.driver,
            browser,
            room_url(server.url, room_id),
            storage,
            user.user_id,
            _identity_resolver(stack, room_id),
            tmp_path,
        )
        pages.append(page)
        if join:
            seconds = await page.join(timeout)
            print(
                f"[element-call] {user.user_id} joined in {seconds:.1f} s "
                f"(page opened {time.monotonic() - t0:.1f} s ago, Chromium {chromium.version})"
            )
        return page

    yield open_call
    for page in pages:
        await page.close()
