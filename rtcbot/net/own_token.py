"""Where the bot sent each of its own OpenID tokens, so its own authorization service can tell
the bot's own request from a replay.

The bot's OpenID token is valid in every room it is in: a service that received one (a
member-advertised SFU, review H2) could replay it at rtcbot's `/sfu/get` and get a LiveKit
token as the bot for any of them. So the service refuses the bot's own account, except for a
token the bot itself sent to that very service: `AuthServiceClient` notes each token with the
URL it goes to (`note_sent`), and the service accepts the bot's token only if it was sent to
its own URL (`sent_to`). A token sent anywhere else stays refused here, whoever presents it.

In memory, process-wide (the client and the service are in the same maubot), keyed by a hash
of the token, bounded, forgotten after a minute (a token is presented within seconds).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

KEEP_S = 60.0
MAX_ENTRIES = 4096

_sent: dict[str, tuple[str, float]] = {}  # sha256(token) -> (service URL, noted at)


def _key(access_token: str) -> str:
    return hashlib.sha256(access_token.encode("utf-8", "surrogatepass")).hexdigest()


def normal_url(url: str) -> str:
    return url.strip().rstrip("/").lower()


def note_sent(
    access_token: str, service_url: str, clock: Callable[[], float] = time.monotonic
) -> None:
    """The bot is about to send its token `access_token` to the service at `service_url`."""
    if not access_token:
        return
    now = clock()
    while _sent and next(iter(_sent.values()))[1] + KEEP_S <= now:  # oldest first
        del _sent[next(iter(_sent))]
    while len(_sent) >= MAX_ENTRIES:
        del _sent[next(iter(_sent))]
    _sent.pop(_key(access_token), None)
    _sent[_key(access_token)] = (normal_url(service_url), now)


def sent_to(access_token: str, clock: Callable[[], float] = time.monotonic) -> str | None:
    """The service URL the bot sent this token to within KEEP_S, or None."""
    entry = _sent.get(_key(access_token))
    if entry is None or entry[1] + KEEP_S <= clock():
        return None
    return entry[0]
