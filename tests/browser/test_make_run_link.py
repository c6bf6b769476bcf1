"""`make run`'s Element Call link: it logs the demo user in and opens the demo room's call.

The same code as `make run` (rtcbot_stack/element_call_web.py: the pinned Element Call, the
`/rtcbot-demo#<key>` page, a fresh session of the demo user per click) on the test stack, in
Chromium with no session at all. The page must end in the room's call lobby, logged in as the
user, with the key gone from the address bar; a wrong key gets nothing. The screenshot in
docs/ELEMENT_CALL.md is this page (RTCBOT_DOC_IMAGES=1 writes it there).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from rtcbot_stack.element_call_web import (
    DEMO_PATH,
    StaticServer,
    demo_login,
    element_call_config,
)
from rtcbot_stack.paths import ROOT
from rtcbot_stack.stack import Stack
from rtcbot_stack.synapse import SERVER_NAME
from tests.browser.element_call import Chromium, Installation
from tests.conftest import UserFactory

pytestmark = pytest.mark.stack

DOC_IMAGE = ROOT / "docs" / "images" / "make-run-element-call.png"


def post_key(base: str, key: bytes) -> int:
    req = urllib.request.Request(f"{base}{DEMO_PATH}/session", data=key, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


async def evaluate(chromium: Chromium, page: int, expression: str) -> object:
    """None while the page navigates (the demo page goes on to the room by itself)."""
    try:
        return await chromium.driver.call("evaluate", page=page, expression=expression)
    except RuntimeError as e:
        if "context was destroyed" in str(e) or "navigating" in str(e):
            return None
        raise


async def until(check: str, page: int, chromium: Chromium, what: str, timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while not await evaluate(chromium, page, check):
        if time.monotonic() > deadline:
            log = await chromium.driver.call("console", page=page, lines=30)
            raise AssertionError(f"{what}: not within {timeout} s\n" + "\n".join(log))
        await asyncio.sleep(0.3)


async def test_the_link_logs_the_demo_user_in_and_opens_the_rooms_call(
    stack: Stack,
    make_user: UserFactory,
    bot_id: str,
    element_call_install: Installation,
    chromium: Chromium,
    tmp_path: Path,
) -> None:
    demo = await make_user("demo")  # password "pw", as make_user registers everyone
    room = await demo.create_room(invite=[bot_id], name="rtcbot demo")
    login = demo_login(stack.synapse.login, demo.user_id, "pw", room)
    config = element_call_config(stack.synapse.url, SERVER_NAME)
    server = StaticServer(element_call_install.dist, config, demo=login)
    browser = await chromium.browser_for_tone(440)
    pages: list[int] = []
    try:
        # Without the key: nothing (a wrong key, none, a too long one).
        for key in (b"wrong", b"", b"x" * 1000):
            assert post_key(server.url, key) == 403, key
        for length in ("abc", "-5", "99999999999"):  # a malformed length: refused, no crash
            conn = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=10)
            conn.putrequest("POST", f"{DEMO_PATH}/session")
            conn.putheader("Content-Length", length)
            conn.endheaders()
            assert conn.getresponse().status == 403, length
            conn.close()
        assert post_key(server.url, login.key.encode()) == 200  # and it still serves

        link = login.link(server.url)
        assert login.key not in link.split("#", 1)[0]  # only in the fragment
        page = int((await chromium.driver.call("newPage", browser=browser, storage={}))["page"])
        pages.append(page)
        await chromium.driver.call("goto", page=page, url=link, timeoutMs=30000)
        await until(
            "!!document.querySelector('[data-testid=\"lobby_joinCall\"]')",
            page,
            chromium,
            "Element Call's lobby of the demo room's call",
        )
        href = str(await chromium.driver.call("evaluate", page=page, expression="location.href"))
        assert "/room/#?roomId=" in href and login.key not in href, href
        stored = await chromium.driver.call(
            "evaluate", page=page, expression="localStorage.getItem('matrix-auth-store')"
        )
        session = json.loads(str(stored))
        assert session["user_id"] == demo.user_id and session["device_id"] == "ELEMENTCALL"
        await asyncio.sleep(1)  # the lobby's camera preview settles
        shot = tmp_path / "make-run-element-call.png"
        await chromium.driver.call("screenshot", page=page, path=str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("RTCBOT_DOC_IMAGES") == "1":
            DOC_IMAGE.parent.mkdir(exist_ok=True)
            DOC_IMAGE.write_bytes(shot.read_bytes())

        # A wrong key: the page says so, and no session is stored.
        wrong = int((await chromium.driver.call("newPage", browser=browser, storage={}))["page"])
        pages.append(wrong)
        await chromium.driver.call(
            "goto", page=wrong, url=f"{server.url}{DEMO_PATH}#nope", timeoutMs=30000
        )
        await until(
            "document.body.innerText.includes('not valid')", wrong, chromium, "the refusal"
        )
        none = await chromium.driver.call(
            "evaluate", page=wrong, expression="localStorage.getItem('matrix-auth-store')"
        )
        assert none is None, none
    finally:
        for p in pages:
            await chromium.driver.call("closePage", page=p)
        server.close()
