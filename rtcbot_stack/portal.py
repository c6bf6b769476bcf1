"""Make the isolated stack's HTTP ports reachable on the host's loopback.

The listening sockets are created in the host's network namespace; a thread then switches
itself (setns) into the stack's namespace, so the connections it opens go to the namespace's
127.0.0.1. Loopback to loopback: nothing leaves the machine. WebRTC media is not
forwarded; browsers on the host can use the admin panel and the client API, not calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
import threading

CLONE_NEWNET = 0x40000000


def _setns(netns_name: str) -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(f"/run/netns/{netns_name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns failed")
    finally:
        os.close(fd)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class Portal:
    def __init__(self, netns_name: str, ports: list[int]) -> None:
        self.netns_name = netns_name
        self.listeners: list[socket.socket] = []
        for port in ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as e:
                print(f"[portal] host port {port} is busy ({e.strerror}); not forwarded")
                sock.close()
                continue
            sock.listen(64)
            self.listeners.append(sock)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, name="portal", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        _setns(self.netns_name)  # only this thread moves; its listeners stay on the host
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            port = writer.get_extra_info("sockname")[1]
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                writer.close()
                return
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

        servers = [await asyncio.start_server(handle, sock=s) for s in self.listeners]
        await asyncio.gather(*(s.serve_forever() for s in servers))
