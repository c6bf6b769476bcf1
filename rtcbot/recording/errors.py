"""The recording feature's errors: sentences for the room."""

from __future__ import annotations

from ..matrix.publisher import PublishError


class MediaError(Exception):
    """A sentence for the room."""


class RecordingCancelled(MediaError):
    """The call ended while its recording was being started (nothing of it is posted)."""


def why(e: Exception) -> str:
    """An error for the room: our own sentences as they are; anything else only by its type
    (its text may quote a server: never relayed; the caller logs it)."""
    if isinstance(e, MediaError | PublishError):
        return str(e)
    return f"an unexpected {type(e).__name__} (the log says more)"
