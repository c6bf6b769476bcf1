"""The bot's client in maubot, set so that a running instance keeps its crypto.

maubot (0.6.0) swaps the Matrix client object when a client's access token, homeserver or
device changes (`PUT /client/{id}`), and clears `crypto` on the old object — which a running
plugin instance still holds: that instance then sends plaintext and sees its E2EE as off
(issue 19: after a second `make run`, whose new login gave the bot a new token). So the
stack keeps the bot's token across starts (stack.py), and when the access details change
all the same, it restarts the instance so that it takes the new client.
"""

from __future__ import annotations

from typing import Any

from . import http
from .maubot_server import Maubot

ACCESS_KEYS = ("access_token", "homeserver", "device_id")


def _get(maubot: Maubot, path: str) -> dict[str, Any] | None:
    try:
        return dict(maubot.api("GET", path))
    except http.HttpError as e:
        if e.status == 404:
            return None
        raise


def put_bot_client(
    maubot: Maubot, instance_id: str, bot: dict[str, Any], homeserver_url: str
) -> bool:
    """Create or update the bot's client; True when a running instance was restarted because
    the client's access details changed under it."""
    user_id = str(bot["user_id"])
    before = _get(maubot, f"/client/{user_id}")
    after = maubot.put_client(user_id, str(bot["access_token"]), str(bot["device_id"]))
    if before is None or all(before.get(k) == after.get(k) for k in ACCESS_KEYS):
        return False
    instance = _get(maubot, f"/instance/{instance_id}")
    if instance is None or not instance.get("started"):
        return False
    maubot.api("PUT", f"/instance/{instance_id}", {"started": False})
    maubot.api("PUT", f"/instance/{instance_id}", {"started": True})
    return True
