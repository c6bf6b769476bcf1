"""A Node.js helper process driven over JSON lines: the Element Call browser driver
(tests/browser/driver.mjs) and the E2EE Matrix client (tests/crypto_client/driver.mjs).

Each request is `{"id": n, "op": …, …}` on stdin; the answer `{"id": n, "ok": …, "result"|
"error": …}` comes on stdout, so commands run concurrently; id 0 is the driver saying it is
ready. Its stderr goes to a log file whose tail every error quotes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any


class NodeDriver:
    def __init__(
        self, what: str, node: str, script: Path, cwd: Path, log_path: Path, limit: int
    ) -> None:
        self.what = what  # "the browser driver", for messages
        self.node = node
        self.script = script
        self.cwd = cwd
        self.log_path = log_path
        self.limit = limit  # longest answer line (screenshots, attachments)
        self._proc: asyncio.subprocess.Process | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next = 1
        self._reader: asyncio.Task[None] | None = None
        self._log: Any = None

    async def start(self, timeout: float) -> None:
        """Raises TimeoutError / ConnectionError when the driver does not say it is ready."""
        self._log = self.log_path.open("ab")
        self._proc = await asyncio.create_subprocess_exec(
            self.node,
            str(self.script),
            cwd=str(self.cwd),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log,
            limit=self.limit,
        )
        ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[0] = ready
        self._reader = asyncio.create_task(self._read())
        await asyncio.wait_for(ready, timeout)

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while True:
            line = await self._proc.stdout.readline()
            if not line:
                break
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            fut = self._pending.pop(msg.get("id"), None)
            if fut is None or fut.done():
                continue
            if msg.get("ok"):
                fut.set_result(msg.get("result"))
            else:
                fut.set_exception(RuntimeError(str(msg.get("error"))))
        err = ConnectionError(f"{self.what} exited; its log: {self.log_tail()}")
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(err)
        self._pending.clear()

    async def call(self, op: str, timeout: float = 60, **args: Any) -> Any:
        if self._proc is None or self._proc.stdin is None or self._proc.returncode is not None:
            raise ConnectionError(f"{self.what} is not running; its log: {self.log_tail()}")
        cid = self._next
        self._next += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[cid] = fut
        self._proc.stdin.write((json.dumps({"id": cid, "op": op, **args}) + "\n").encode())
        await self._proc.stdin.drain()
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(cid, None)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty)"

    async def close(self, timeout: float = 15) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()  # the driver closes what it opened and exits
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._log is not None:
            self._log.close()
        self._proc = None
