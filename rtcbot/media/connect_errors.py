"""Why a LiveKit connect failed, in words for people: the SDK's error classified (capacity,
restricted room creation, not authorised, unreachable), its text scrubbed of the token (it
contains it), and the SFU's own HTTP answer to `/rtc/validate` when the SDK says too little."""

from __future__ import annotations

import re
from typing import Literal

import aiohttp

from ..redaction import redact, shorten
from .tokens import SfuAccess

ConnectErrorKind = Literal[
    "insufficient_capacity", "room_creation_restricted", "not_authorised", "unreachable", "unknown"
]


_STATUS_RE = re.compile(r"\b(?:client|server) error: (\d{3})\b")
_ANY_STATUS_RE = re.compile(r"\b([1-5]\d\d) [A-Z][A-Za-z ]+")
_TRANSPORT_HINTS = (
    "connection refused",
    "dns error",
    "failed to lookup",
    "no route to host",
    "network is unreachable",
    "timed out",
    "timeout",
    "connection reset",
    "tls",
    "certificate",
    "io error",
)
_CAPACITY_HINTS = ("max participants", "configured limit", "limit exceeded", "capacity")
_MAX_DETAIL = 160
_VALIDATE_TIMEOUT = 5.0


class SfuConnectError(Exception):
    """Connecting to the LiveKit SFU failed; `message` is a sentence meant for a person.

    kind, following how Element Call classifies the same failures:
    "insufficient_capacity" (HTTP 503, 429, or the signal connection failed although the
    token validates, i.e. a room/participant limit), "room_creation_restricted" (404: the
    room does not exist and this token may not create it), "not_authorised" (401/403),
    "unreachable" (network, TLS or timeout), "unknown" (anything else).
    The access token never appears in `message`, `detail` or the repr.
    """

    def __init__(
        self, kind: ConnectErrorKind, message: str, *, status: int | None = None, detail: str = ""
    ) -> None:
        super().__init__(message)
        self.kind: ConnectErrorKind = kind
        self.message = message
        self.status = status
        self.detail = detail

    @property
    def retryable(self) -> bool:
        return self.kind in ("insufficient_capacity", "unreachable", "unknown")

    def __repr__(self) -> str:
        return f"SfuConnectError(kind={self.kind!r}, status={self.status!r}, message={self.message!r})"


def scrub(text: str, *secrets: str) -> str:
    """Remove secrets (and anything shaped like a JWT) from text, then shorten it."""
    return shorten(redact(text, secrets), _MAX_DETAIL)


def status_from_error(text: str) -> int | None:
    """The HTTP status in an SDK error text such as "client error: 401 Unauthorized - …"."""
    m = _STATUS_RE.search(text) or _ANY_STATUS_RE.search(text)
    return int(m.group(1)) if m else None


def classify_connect_error(
    text: str, status: int | None = None, *, validate_status: int | None = None
) -> tuple[ConnectErrorKind, int | None]:
    """Map an SDK error text (already scrubbed) and/or HTTP status to an error kind.

    `status` overrides the status found in the text; `validate_status` is what
    `GET /rtc/validate` answered after the failure (None when it was not asked or could
    not be reached).
    """
    if status is None:
        status = status_from_error(text)
    if status is None and validate_status is not None and validate_status != 200:
        status = validate_status
    low = text.lower()
    if status in (401, 403):
        return "not_authorised", status
    if status == 404:
        return "room_creation_restricted", status
    if status in (503, 429) or any(h in low for h in _CAPACITY_HINTS):
        return "insufficient_capacity", status
    if status == 200 or (validate_status == 200 and not _is_transport_error(low)):
        # LiveKit answers 200 on /rtc/validate but refuses the session when a participant
        # limit is reached; Element Call reports that as insufficient capacity too.
        return "insufficient_capacity", status or 200
    if _is_transport_error(low) or (status is None and validate_status is None):
        return "unreachable", status
    return "unknown", status


def _is_transport_error(low: str) -> bool:
    return any(h in low for h in _TRANSPORT_HINTS)


def connect_error_message(kind: ConnectErrorKind, status: int | None, detail: str) -> str:
    code = f" (HTTP {status})" if status else ""
    why = f": {detail}" if detail else ""
    if kind == "insufficient_capacity":
        return (
            f"The LiveKit SFU has no capacity for the bot right now{code}; try again later "
            "or ask the server admin to raise its limits."
        )
    if kind == "room_creation_restricted":
        return (
            f"The LiveKit room does not exist and the bot may not create it{code}. Someone "
            "has to start the call first, or the authorization service must create rooms."
        )
    if kind == "not_authorised":
        return (
            f"The LiveKit SFU refused the bot's access token{code}{why}. The token may have "
            "expired or been signed with a key the SFU does not know."
        )
    if kind == "unreachable":
        return f"Could not reach the LiveKit SFU{why}. Check livekit.url and the network."
    return f"Connecting to the LiveKit SFU failed{code}{why}."


def http_url(ws_url: str) -> str:
    """The HTTP base of a LiveKit signalling URL (ws→http, wss→https)."""
    url = ws_url.rstrip("/")
    if url.startswith("wss://"):
        return "https://" + url[len("wss://") :]
    if url.startswith("ws://"):
        return "http://" + url[len("ws://") :]
    return url


async def validate_status(access: SfuAccess, timeout: float = _VALIDATE_TIMEOUT) -> int | None:
    """HTTP status of `GET /rtc/validate` for this access (None if the SFU is unreachable).

    The URL carries the token, so neither the URL nor an exception text is ever logged.
    """
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(
                f"{http_url(access.url)}/rtc/validate",
                params={"access_token": access.jwt},
                allow_redirects=False,
            ) as resp,
        ):
            return resp.status
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
