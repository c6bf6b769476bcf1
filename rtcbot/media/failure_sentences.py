"""What the room is told when the bot cannot get into a call's media: fixed sentences.

An SfuAuthError's or SfuConnectError's `message` may quote what a server answered or an
address it was reached at (useful in the log and in diagnostics); a room never gets that
text, only one of these sentences chosen by the error's kind (security review M1).
"""

from __future__ import annotations

from .connect_errors import SfuConnectError
from .tokens import SfuAuthError

_AUTH = {
    "unauthorised": "the authorization service refused me (the log says more)",
    "unreachable": "the authorization service could not be reached",
    "bad_request": "the authorization service rejected my request (the log says more)",
    "server_error": "the authorization service had a problem; this may pass",
    "bad_response": "the authorization service gave no usable answer",
    "not_found": "no authorization service answers at the configured address",
}
_CONNECT = {
    "insufficient_capacity": "the media server is full; this may pass",
    "room_creation_restricted": "the media server does not let me open this call's room",
    "not_authorised": "the media server refused my token",
    "unreachable": "the media server could not be reached",
    "unknown": "connecting to the media server failed (the log says more)",
}


_HOMESERVER = {
    "not_found": "my homeserver advertises its SFU by `url`, but nothing answers its "
    "rtc/livekit/get_token (404): it needs an MSC4512 token service behind it (an admin "
    "can run the diag command)",
    "unauthorised": "my homeserver refused me a token for this call's SFU (the log says more)",
}


def room_sentence(e: BaseException) -> str:
    """Why the bot could not join, for the room: never the server's own words."""
    if isinstance(e, SfuAuthError) and e.homeserver and e.kind in _HOMESERVER:
        return _HOMESERVER[e.kind]
    if isinstance(e, SfuAuthError):
        return _AUTH.get(e.kind, "the authorization service failed")
    if isinstance(e, SfuConnectError):
        return _CONNECT.get(e.kind, "connecting to the media server failed")
    return "something went wrong (the log says more)"
