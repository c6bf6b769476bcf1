"""Speakers per recording (`recording.max_tracks`): the first ones are recorded, later ones
are not read at all (the recorder unsubscribes them), and their names go into the summary."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection


class TrackLimit:
    def __init__(self, most: int | None, log: logging.Logger) -> None:
        self.most = most  # None: no limit
        self.log = log
        self._left_out: dict[str, str] = {}  # stream key → display name

    def refuses(self, key: str, recorded: Collection[str], name: Callable[[], str]) -> bool:
        """Whether the stream `key` stays out, `recorded` being the keys recorded so far."""
        if self.most is None or key in recorded or len(recorded) < self.most:
            return False
        if key not in self._left_out:
            self._left_out[key] = name()
            self.log.warning("not recording %s: %d speakers already", key, self.most)
        return True

    def names(self) -> list[str]:
        return sorted(set(self._left_out.values()))
