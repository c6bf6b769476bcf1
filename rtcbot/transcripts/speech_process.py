"""maubot's side of the speech worker process (`speech_worker.py`): start it, send it work,
hand each request its words as they come, and fail every waiting request with one clear
sentence if the process dies (killed for memory, a crash in the native code)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import speech_worker

Sink = Callable[[list[list[Any]], float], None]  # words of a segment, seconds done
STDOUT_LIMIT = 16 * 1024 * 1024  # one segment's words per line: far below this
EXIT_WAIT_S = 5.0  # after its input ends, then it is killed
STDERR_LINES = 20  # kept to say why it stopped
WORKER_ARENAS = 2


class WorkerFailed(Exception):
    """The worker could not do a request: `kind` is the exception type it saw (said in the
    room, e.g. "InvalidDataError" for a file that cannot be read), `detail` goes to the log."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class WorkerGone(Exception):
    """The process ended with requests still waiting (or before it was ready)."""


class WorkerLoadError(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def worker_source() -> str:
    """The worker's source, also when the plugin is imported from maubot's zip."""
    loader = getattr(speech_worker, "__loader__", None)
    source = loader.get_source(speech_worker.__name__) if loader is not None else None
    if not source:
        raise RuntimeError("the speech worker's source cannot be read")
    return str(source)


@dataclass
class _Request:
    sink: Sink
    done: asyncio.Future[None] = field(default_factory=asyncio.Future)


class SpeechProcess:
    def __init__(self, proc: asyncio.subprocess.Process, log: logging.Logger) -> None:
        self.proc = proc
        self.log = log
        self._ids = itertools.count(1)
        self._requests: dict[int, _Request] = {}
        self._stderr: deque[str] = deque(maxlen=STDERR_LINES)
        self._readers: list[asyncio.Task[None]] = []

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None and not self.proc.stdin.is_closing()  # type: ignore[union-attr]

    @property
    def busy(self) -> bool:
        return bool(self._requests)

    @classmethod
    async def start(cls, settings: dict[str, Any], log: logging.Logger) -> SpeechProcess:
        """The worker, with its model loaded. Raises WorkerLoadError or WorkerGone."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            worker_source(),
            json.dumps(settings),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=STDOUT_LIMIT,
            # Few malloc arenas: its threads take turns with the model, not memory of their own.
            env={"MALLOC_ARENA_MAX": str(WORKER_ARENAS), **os.environ},
        )
        self = cls(proc, log)
        self._readers.append(asyncio.ensure_future(self._read_stderr()))
        try:
            first = await proc.stdout.readline()  # type: ignore[union-attr]
            msg = json.loads(first) if first else {}
        except (asyncio.CancelledError, Exception):
            await self.close()
            raise
        if msg.get("ready"):
            self._readers.append(asyncio.ensure_future(self._read_stdout()))
            log.info("speech worker %d started", proc.pid)
            return self
        await self.close()
        if "load_error" in msg:
            raise WorkerLoadError(str(msg["load_error"]), str(msg.get("detail", "")))
        raise WorkerGone(self._why_gone())

    async def request(self, header: dict[str, Any], sink: Sink, payload: bytes = b"") -> None:
        """Send one request and wait for its end; its words go to `sink` as they come."""
        rid = next(self._ids)
        req = self._requests[rid] = _Request(sink)
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            if not self.alive:
                raise WorkerGone(self._why_gone())
            line = {**header, "id": rid, **({"bytes": len(payload)} if payload else {})}
            stdin.write(json.dumps(line).encode() + b"\n" + payload)
            await stdin.drain()
            await req.done
        except asyncio.CancelledError:
            if self.alive:  # the worker stops it at its next 30 s window
                with contextlib.suppress(Exception):
                    stdin.write(json.dumps({"id": rid, "op": "cancel"}).encode() + b"\n")
            raise
        except (ConnectionError, BrokenPipeError) as e:
            raise WorkerGone(self._why_gone()) from e
        finally:
            self._requests.pop(rid, None)

    async def close(self) -> None:
        """End the worker (its input ends; killed if it has not exited within seconds)."""
        stdin = self.proc.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), EXIT_WAIT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        for task in self._readers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, EXIT_WAIT_S)

    # -- reading ---------------------------------------------------------------------------
    async def _read_stdout(self) -> None:
        out = self.proc.stdout
        assert out is not None
        try:
            while line := await out.readline():
                self._dispatch(json.loads(line))
        except Exception as e:  # a line over the limit or not JSON: the worker is unusable
            self.log.warning("speech worker %d: unreadable output (%s)", self.pid, e)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self.proc.wait()
        why = self._why_gone()
        if self._requests:
            self.log.warning("%s; stderr:\n%s", why, "\n".join(self._stderr))
        for req in self._requests.values():
            if not req.done.done():
                req.done.set_exception(WorkerGone(why))

    def _dispatch(self, msg: dict[str, Any]) -> None:
        req = self._requests.get(int(msg.get("id", 0)))
        if req is None or req.done.done():
            return  # a cancelled request's last words
        if "words" in msg:
            req.sink(msg["words"], float(msg["done_s"]))
        elif msg.get("end"):
            req.done.set_result(None)
        elif "error" in msg:
            req.done.set_exception(WorkerFailed(str(msg["error"]), str(msg.get("detail", ""))))

    async def _read_stderr(self) -> None:
        err = self.proc.stderr
        assert err is not None
        while line := await err.readline():
            text = line.decode(errors="replace").rstrip()
            self._stderr.append(text)
            self.log.debug("speech worker %d: %s", self.pid, text)

    def _why_gone(self) -> str:
        code = self.proc.returncode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return f"the speech worker stopped ({how})"
