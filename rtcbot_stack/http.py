"""Tiny blocking JSON-over-HTTP helpers (stdlib only) for setting the stack up."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any


class HttpError(Exception):
    def __init__(self, status: int, body: str, url: str) -> None:
        super().__init__(f"HTTP {status} from {url}: {body[:300]}")
        self.status = status
        self.body = body

    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}


def request(
    method: str,
    url: str,
    body: Any = None,
    token: str | None = None,
    raw: bytes | None = None,
    content_type: str = "application/json",
    timeout: float = 30,
) -> Any:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, method=method, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read().decode()
    except urllib.error.HTTPError as e:
        raise HttpError(e.code, e.read().decode(errors="replace"), url) from None
    return json.loads(text) if text.strip() else None


def wait_until_up(url: str, timeout: float, alive: Any = None, expect: int = 200) -> float:
    """Poll `url` until it answers `expect`; return the seconds it took."""
    start = time.monotonic()
    last: Exception | None = None
    while time.monotonic() - start < timeout:
        if alive is not None and not alive():
            raise RuntimeError(f"process died before {url} came up")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == expect:
                    return time.monotonic() - start
        except urllib.error.HTTPError as e:
            if e.code == expect:
                return time.monotonic() - start
            last = e
        except OSError as e:
            last = e
        time.sleep(0.05)
    raise TimeoutError(f"{url} not up after {timeout:.0f} s (last error: {last})")
