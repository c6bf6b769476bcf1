"""A Matrix client with real E2EE for tests: `driver.mjs` (matrix-js-sdk 43, Rust crypto, in
Node) driven over JSON lines. It logs in as a test user (token and device from the stack),
creates encrypted rooms, sends encrypted text, and decrypts what the bot answers.

Everything it talks to is the stack's homeserver on loopback (inside the test namespace).
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.stack.node_driver import NodeDriver

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("driver.mjs")


class CryptoClientMissing(RuntimeError):
    """Node or the npm packages are not installed (`make setup` installs them)."""


def find_node() -> str:
    node = shutil.which("node")
    if node is None:
        raise CryptoClientMissing("node not found: tests/crypto_client needs Node.js >= 20")
    if not (REPO / "node_modules" / "matrix-js-sdk" / "package.json").is_file():
        raise CryptoClientMissing("node_modules/matrix-js-sdk missing: run `npm ci` (make setup)")
    return node


class Driver(NodeDriver):
    """One `node driver.mjs` process (matrix-js-sdk clients with Rust crypto)."""

    def __init__(self, log_path: Path) -> None:
        super().__init__("the crypto client driver", "", DRIVER, REPO, log_path, 16 * 2**20)

    async def start(self, timeout: float = 30) -> None:
        self.node = find_node()
        try:
            await super().start(timeout)
        except (TimeoutError, ConnectionError) as e:
            raise CryptoClientMissing(
                f"the crypto client driver did not start: {e}; its log: {self.log_tail()}"
            ) from e


@dataclass
class Message:
    """A timeline event as the crypto client sees it (decrypted when it could be)."""

    event_id: str
    sender: str
    type: str
    wire_type: str
    encrypted: bool
    decryption_failure: str | None
    content: dict[str, Any]

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Message:
        return cls(
            event_id=str(raw["event_id"]),
            sender=str(raw["sender"]),
            type=str(raw["type"]),
            wire_type=str(raw["wire_type"]),
            encrypted=bool(raw["encrypted"]),
            decryption_failure=raw.get("decryption_failure"),
            content=dict(raw.get("content") or {}),
        )

    @property
    def body(self) -> str:
        return str(self.content.get("body", ""))


class CryptoClient:
    """One logged-in user of the driver (its own device and Rust crypto store)."""

    def __init__(
        self, driver: Driver, handle: int, user_id: str, device_id: str, access_token: str
    ) -> None:
        self.driver = driver
        self.handle = handle
        self.user_id = user_id
        self.device_id = device_id
        # The same account without crypto (MatrixUser) may use it for state events.
        self.access_token = access_token

    @classmethod
    async def login(
        cls, driver: Driver, base_url: str, user_id: str, device_id: str, access_token: str
    ) -> CryptoClient:
        res = await driver.call(
            "login",
            baseUrl=base_url,
            userId=user_id,
            deviceId=device_id,
            accessToken=access_token,
        )
        return cls(driver, int(res["client"]), user_id, device_id, access_token)

    async def _call(self, op: str, timeout: float = 60, **args: Any) -> Any:
        return await self.driver.call(op, timeout=timeout, client=self.handle, **args)

    async def cross_sign_self(self) -> bool:
        return bool(await self._call("crossSignSelf"))

    async def create_encrypted_room(self, invite: list[str], name: str = "e2ee test") -> str:
        return str(await self._call("createEncryptedRoom", invite=invite, name=name))

    async def wait_for_joined(self, room_id: str, user_id: str, timeout: float = 30) -> None:
        await self._call(
            "waitForJoined",
            timeout=timeout + 5,
            roomId=room_id,
            userId=user_id,
            timeoutMs=int(timeout * 1000),
        )

    async def is_encrypted(self, room_id: str) -> bool:
        return bool(await self._call("isEncrypted", roomId=room_id))

    async def discard_session(self, room_id: str) -> None:
        """Start a new Megolm session with the next message (its key goes out anew)."""
        await self._call("discardSession", roomId=room_id)

    async def send_text(self, room_id: str, body: str) -> str:
        return str(await self._call("sendText", roomId=room_id, body=body))

    async def wait_for_message(
        self,
        room_id: str,
        sender: str,
        after: str | None = None,
        contains: str | None = None,
        reply_to: str | None = None,
        timeout: float = 30,
    ) -> Message:
        raw = await self._call(
            "waitForMessage",
            timeout=timeout + 5,
            roomId=room_id,
            sender=sender,
            after=after,
            contains=contains,
            replyTo=reply_to,
            timeoutMs=int(timeout * 1000),
        )
        return Message.from_json(raw)

    async def messages(self, room_id: str) -> list[Message]:
        return [Message.from_json(m) for m in await self._call("messages", roomId=room_id)]

    async def device_status(self, user_id: str, device_id: str) -> dict[str, bool] | None:
        res = await self._call("deviceStatus", userId=user_id, deviceId=device_id)
        return None if res is None else {k: bool(v) for k, v in res.items()}

    async def event_shield(self, room_id: str, event_id: str) -> dict[str, str | None] | None:
        """The shield Element shows on the event: {"colour": NONE|GREY|RED, "reason": …}."""
        res = await self._call("eventShield", roomId=room_id, eventId=event_id)
        return None if res is None else dict(res)

    async def download_attachment(self, file: dict[str, Any]) -> dict[str, Any]:
        return dict(await self._call("downloadAttachment", file=file))

    async def send_sticky(
        self, room_id: str, event_type: str, content: dict[str, Any], duration_ms: int = 3_600_000
    ) -> str:
        return str(
            await self._call(
                "sendSticky",
                roomId=room_id,
                type=event_type,
                content=content,
                durationMs=duration_ms,
            )
        )

    async def received_to_device(self) -> list[dict[str, Any]]:
        """Every to-device message this client got: type, sender, content, encrypted."""
        return list(await self._call("receivedToDevice"))

    async def send_to_device(
        self, user_id: str, device_id: str, event_type: str, content: dict[str, Any]
    ) -> None:
        await self._call(
            "sendToDevice", userId=user_id, deviceId=device_id, type=event_type, content=content
        )

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._call("close", timeout=10)
