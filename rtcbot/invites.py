"""Which invites the bot accepts: an allowlist of users (globs) and homeservers."""

from __future__ import annotations

from fnmatch import fnmatchcase


def server_of(user_id: str) -> str:
    return user_id.split(":", 1)[1] if ":" in user_id else ""


def invite_allowed(
    inviter: str, allowed_users: tuple[str, ...], allowed_servers: tuple[str, ...]
) -> bool:
    """Empty lists accept everyone; otherwise the inviter must match one of them."""
    if not allowed_users and not allowed_servers:
        return True
    if any(fnmatchcase(inviter, pattern) for pattern in allowed_users):
        return True
    return server_of(inviter) in allowed_servers
