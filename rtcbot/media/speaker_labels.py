"""How each recorded stream is named in its file and in the summary: (display name, device).

Named when its first track arrives, from what the recording's hooks know without a request;
a name they could not know yet (a late joiner never looked up) is resolved once before the
stream's first audio is written, within a time limit (the stream buffers meanwhile)."""

from __future__ import annotations

import asyncio
import logging

from livekit import rtc

from .recorder_hooks import RecorderHooks


class SpeakerLabels:
    def __init__(self, hooks: RecorderHooks, log: logging.Logger, resolve_timeout: float) -> None:
        self.hooks = hooks
        self.log = log
        self.resolve_timeout = resolve_timeout
        self.labels: dict[str, tuple[str, str]] = {}  # stream key → (display name, device)
        self.identities: dict[str, str] = {}  # stream key → LiveKit identity
        self._unresolved: dict[str, str] = {}  # stream key → source suffix

    def __contains__(self, key: object) -> bool:
        return key in self.labels

    def __getitem__(self, key: str) -> tuple[str, str]:
        return self.labels[key]

    def add(self, key: str, participant: rtc.RemoteParticipant, suffix: str | None) -> None:
        display, device = self.names_of(participant)
        self.labels[key] = (display, f"{device}-{suffix}" if suffix else device)
        self._unresolved[key] = suffix or ""
        self.identities[key] = participant.identity

    def unresolved(self, key: str) -> bool:
        return key in self._unresolved

    async def resolve(self, key: str, identity: str) -> None:
        """Ask the hooks for a name the sync lookup could not know yet, once per stream."""
        suffix = self._unresolved.pop(key, None)
        if suffix is None:
            return
        try:
            async with asyncio.timeout(self.resolve_timeout):
                found = await self.hooks.resolve_name(identity)
        except Exception as e:
            self.log.info("could not look up the name of %s: %s", identity, e)
            return
        display, device = found or ("", "")
        if display:
            device = device or self.labels[key][1]
            self.labels[key] = (display, f"{device}-{suffix}" if suffix else device)

    def names_of(self, participant: rtc.RemoteParticipant) -> tuple[str, str]:
        try:
            known = self.hooks.name_for(participant.identity)
        except Exception:
            self.log.exception("name_for(%r) failed", participant.identity)
            known = None
        if known is not None:
            display, device = known
            return display or participant.identity, device or ""
        return participant.name or participant.identity, ""
