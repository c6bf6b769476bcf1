"""Serves the pinned Element Call build on 127.0.0.1, as its nginx config does, for `make run`
(the demo user's link) and for the browser tests.

- SPA fallback: a path that is not a file gets `index.html` (EC routes `/room/…` client-side);
- the embedded build loads `./assets/…` relative to the page, so `/room/assets/x.js` is mapped
  to `dist/assets/x.js` (any `…/assets/<file>`);
- `config.json` comes from memory (EC fetches `/config.json`, or relative to the page);
- `.wasm` is served as `application/wasm` (the Rust crypto and MediaPipe modules).

- `make run`'s link, `/rtcbot-demo#<key>`: a page that logs the demo user in and opens the demo
  room's call. The key is random per run and travels in the fragment (never in a request line,
  a log or a Referer); the page trades it, once per click, for a fresh session of the demo user
  (`POST /rtcbot-demo/session`), stores it where Element Call keeps its session and goes to
  the room. Without the key the page gets nothing.

Standard library only; a daemon thread, stopped with `close()`.
"""

from __future__ import annotations

import functools
import hmac
import http.server
import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .paths import ROOT

EC_PACKAGE = "@element-hq/element-call-embedded"
EC_DIST = ROOT / "node_modules" / EC_PACKAGE / "dist"
DEMO_PATH = "/rtcbot-demo"
ELEMENT_CALL_PORT = 8090  # make run's (the other services' fixed ports: stack.FIXED_PORTS)
DEMO_DEVICE = "ELEMENTCALL"  # the demo user's browser session: one device, however many clicks
MAX_KEY_BODY = 256


def element_call_config(homeserver_url: str, server_name: str, **extra: Any) -> dict[str, Any]:
    """EC's config.json. The LiveKit transport is not in it: EC must discover it from the
    homeserver (MSC4143 `rtc/transports`), as in a real deployment."""
    cfg: dict[str, Any] = {
        "default_server_config": {
            "m.homeserver": {"base_url": homeserver_url, "server_name": server_name}
        },
        "matrix_rtc_session": {"wait_for_key_rotation_ms": 5000},
    }
    cfg.update(extra)
    return cfg


@dataclass
class DemoLogin:
    """What `/rtcbot-demo` hands out: a new session of the demo user (`login()` returns
    user_id, device_id, access_token) and the room to open, to whoever has the key."""

    login: Callable[[], dict[str, str]]
    room_id: str
    key: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    def link(self, base: str) -> str:
        return f"{base}{DEMO_PATH}#{self.key}"


_DEMO_PAGE = """<!doctype html><meta charset="utf-8"><title>rtcbot demo</title>
<p id="say">Logging the demo user in …</p>
<script>
(async () => {
  const say = (t) => { document.getElementById("say").textContent = t; };
  const key = location.hash.slice(1);
  const resp = await fetch("__PATH__/session", {method: "POST", body: key});
  if (!resp.ok) { say("This link is not valid for the running stack: use the one make run printed."); return; }
  const s = await resp.json();
  localStorage.setItem("matrix-auth-store", JSON.stringify({
    user_id: s.user_id, device_id: s.device_id, access_token: s.access_token,
    passwordlessUser: false}));
  history.replaceState(null, "", "__PATH__");  // the key leaves the address bar
  location.replace("/room/#?roomId=" + encodeURIComponent(s.room_id));
})();
</script>
""".replace("__PATH__", DEMO_PATH)


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".json": "application/json",
    }

    def __init__(
        self, *args: Any, root: Path, config: bytes, demo: DemoLogin | None, **kwargs: Any
    ) -> None:
        self._root = root
        self._config = config
        self._demo = demo
        super().__init__(*args, directory=str(root), **kwargs)

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        if self._demo is None or self._path_only() != f"{DEMO_PATH}/session":
            self._send(404, b"", "text/plain")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 < length <= MAX_KEY_BODY:
            self._send(403, b"", "text/plain")
            return
        given = self.rfile.read(length)
        if not hmac.compare_digest(given, self._demo.key.encode()):
            self._send(403, b"", "text/plain")
            return
        try:
            session = {**self._demo.login(), "room_id": self._demo.room_id}
        except Exception:
            self._send(502, b"", "text/plain")  # the homeserver refused: nothing to hand out
            return
        self._send(200, json.dumps(session).encode(), "application/json")

    def _path_only(self) -> str:
        return self.path.split("?", 1)[0].split("#", 1)[0]

    def do_GET(self) -> None:
        if self._demo is not None and self._path_only() == DEMO_PATH:
            self._send(200, _DEMO_PAGE.encode(), "text/html; charset=utf-8")
            return
        if self._path_only().endswith("/config.json"):
            self._send(200, self._config, "application/json")
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
        self,
        root: Path,
        config: dict[str, Any],
        host: str = "127.0.0.1",
        port: int = 0,
        demo: DemoLogin | None = None,
    ) -> None:
        if not (root / "index.html").is_file():
            raise FileNotFoundError(f"{root}/index.html missing: not an Element Call build")
        handler = functools.partial(
            _Handler, root=root, config=json.dumps(config, indent=1).encode(), demo=demo
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


def demo_login(
    login: Callable[[str, str, str], dict[str, Any]], user_id: str, password: str, room_id: str
) -> DemoLogin:
    """`login` is Synapse.login(username, password, device_id)."""
    localpart = user_id.removeprefix("@").split(":", 1)[0]

    def session() -> dict[str, str]:
        answer = login(localpart, password, DEMO_DEVICE)
        return {k: str(answer[k]) for k in ("user_id", "device_id", "access_token")}

    return DemoLogin(session, room_id)
