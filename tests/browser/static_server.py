"""Serves the pinned Element Call build on 127.0.0.1, as its nginx config does.

- SPA fallback: a path that is not a file gets `index.html` (EC routes `/room/…` client-side);
- the embedded build loads `./assets/…` relative to the page, so `/room/assets/x.js` is mapped
  to `dist/assets/x.js` (any `…/assets/<file>`);
- `config.json` comes from memory (EC fetches `/config.json`, or relative to the page);
- `.wasm` is served as `application/wasm` (the Rust crypto and MediaPipe modules).

Standard library only; a daemon thread, stopped with `close()`.

By hand (docs/ELEMENT_CALL.md), for the stack of `make run`:
    .venv/bin/python -m tests.browser.static_server --port 8090
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import signal
import threading
from pathlib import Path
from typing import Any


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".json": "application/json",
    }

    def __init__(self, *args: Any, root: Path, config: bytes, **kwargs: Any) -> None:
        self._root = root
        self._config = config
        super().__init__(*args, directory=str(root), **kwargs)

    def _path_only(self) -> str:
        return self.path.split("?", 1)[0].split("#", 1)[0]

    def do_GET(self) -> None:
        if self._path_only().endswith("/config.json"):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(self._config)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(self._config)
            return
        super().do_GET()

    def translate_path(self, path: str) -> str:
        p = path.split("?", 1)[0].split("#", 1)[0]
        if "/assets/" in p:
            p = "/assets/" + p.rsplit("/assets/", 1)[1]
        full = super().translate_path(p)
        if Path(full).is_file():
            return full
        return str(self._root / "index.html")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class StaticServer:
    """`StaticServer(dist, config).url` → http://127.0.0.1:<free port>"""

    def __init__(
        self, root: Path, config: dict[str, Any], host: str = "127.0.0.1", port: int = 0
    ) -> None:
        if not (root / "index.html").is_file():
            raise FileNotFoundError(f"{root}/index.html missing: not an Element Call build")
        handler = functools.partial(
            _Handler, root=root, config=json.dumps(config, indent=1).encode()
        )
        self._server = http.server.ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        port = self._server.server_address[1]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="element-call-static", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def main(argv: list[str] | None = None) -> int:
    """Serve the pinned Element Call for a homeserver until Ctrl-C (for trying it by hand)."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.browser.static_server", description=main.__doc__
    )
    parser.add_argument("--homeserver", default="http://127.0.0.1:8008")
    parser.add_argument("--server-name", default="localhost")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args(argv)
    from tests.browser.element_call import EC_PACKAGE, REPO, element_call_config

    dist = REPO / "node_modules" / EC_PACKAGE / "dist"
    config = element_call_config(args.homeserver, args.server_name)
    server = StaticServer(dist, config, args.host, args.port)
    print(f"Element Call for {args.homeserver}: {server.url}/   (Ctrl-C stops it)", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
