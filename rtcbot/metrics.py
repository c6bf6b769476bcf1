"""Prometheus metrics of one plugin instance.

A registry per instance, not the global one: maubot reloads plugin modules on update, and
re-registering collectors in the process-wide registry would fail with duplicate series.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# Reaction latency: a call.member event's origin_server_ts → the bot's notice sent.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30)


LiveSource = Callable[[], dict[str, float]]


class _LiveGauges(Collector):
    """Gauges read from the managers' state at scrape time (no bookkeeping to drift)."""

    def __init__(self) -> None:
        self.sources: list[LiveSource] = []

    def collect(self):  # type: ignore[no-untyped-def]  # prometheus_client's signature
        values: dict[str, float] = {}
        for read in self.sources:
            values.update(read())
        docs = {
            "rtcbot_calls_active": "Calls in progress in the rooms the bot is in",
            "rtcbot_call_members": "Devices in those calls",
            "rtcbot_own_memberships": "Calls the bot means to be a member of",
            "rtcbot_own_memberships_joined": (
                "Of those, the ones whose membership is on the homeserver now"
            ),
            "rtcbot_recordings_active": "Recordings in progress",
            "rtcbot_recording_disk_free_bytes": "Free space on the recordings disk",
            "rtcbot_recording_disk_floor_bytes": (
                "recording.min_free_mb: below it no recording starts and running ones stop"
            ),
            "rtcbot_delegated_leaves_pending": "Delegated delayed leaves being kept or sent",
            "rtcbot_encrypted_calls": "End-to-end encrypted calls the bot takes part in",
            "rtcbot_participants_not_decrypting": (
                "Participants of those calls whose media the bot cannot decrypt now"
            ),
            "rtcbot_process_resident_bytes": "Resident memory of the process the bot runs in",
            "rtcbot_speech_worker_resident_bytes": (
                "Resident memory of the speech model's worker process (0 when none runs)"
            ),
        }
        for name, doc in docs.items():
            yield GaugeMetricFamily(name, doc, value=values.get(name, 0.0))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._live = _LiveGauges()
        self.registry.register(self._live)
        self.announcements = Counter(
            "rtcbot_announcements",
            "Notices the bot posted about calls",
            ["kind"],
            registry=self.registry,
        )
        self.expiring_fallbacks = Counter(
            "rtcbot_membership_expiring_fallbacks",
            "Memberships that fell back from a delayed leave to expiring (no delayed events, "
            "maximum delay unusable, the per-user cap of pending delayed events)",
            registry=self.registry,
        )
        self.heartbeat_failures = Counter(
            "rtcbot_heartbeat_failures",
            "Failed restarts of the bot's delayed leave",
            registry=self.registry,
        )
        self.commands = Counter(
            "rtcbot_commands", "Commands handled", ["command"], registry=self.registry
        )
        self.sfu_webhooks = Counter(
            "rtcbot_sfu_webhooks",
            "Verified LiveKit webhook events, by event",
            ["event"],
            registry=self.registry,
        )
        self.delegated_leaves = Counter(
            "rtcbot_delegated_leaves",
            "Delegated delayed leaves that ended, by outcome (sent, already_sent, send_failed, "
            "restart_not_found, restart_failed, connection_aborted, expired, replaced)",
            ["outcome"],
            registry=self.registry,
        )
        self.media_keys_received = Counter(
            "rtcbot_media_keys_received",
            "Element Call media keys received over Olm, by outcome (accepted, outdated, invalid)",
            ["outcome"],
            registry=self.registry,
        )
        self.media_keys_sent = Counter(
            "rtcbot_media_keys_sent",
            "The bot's own media key sent to one device, by outcome (sent, failed)",
            ["outcome"],
            registry=self.registry,
        )
        self.media_key_rotations = Counter(
            "rtcbot_media_key_rotations",
            "New own media keys made after someone left (or joined after the grace period)",
            registry=self.registry,
        )
        self.frame_crypto_states = Counter(
            "rtcbot_frame_crypto_states",
            "LiveKit frame encryption state changes, by state (OK, MISSING_KEY, "
            "DECRYPTION_FAILED, …) and whose (participant: decrypting someone; bot: its own "
            "sender)",
            ["state", "whose"],
            registry=self.registry,
        )
        self.recordings_ended = Counter(
            "rtcbot_recordings_ended",
            "Recordings that ended, by outcome (posted; failed: the summary or a file could "
            "not be posted)",
            ["outcome"],
            registry=self.registry,
        )
        self.auth_requests = Counter(
            "rtcbot_auth_requests",
            "Requests to the authorization service's token endpoints, by endpoint and HTTP "
            "status (200 issued, 4xx refused, 429 rate limited, 5xx the service failed)",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.reaction_latency = Histogram(
            "rtcbot_reaction_latency_seconds",
            "From a call membership event on the homeserver to the bot's notice",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.up = Gauge("rtcbot_up", "1 while the instance runs", registry=self.registry)
        self.up.set(1)

    def add_live_source(self, read: LiveSource) -> None:
        """A manager's gauges, read at every scrape (e.g. CallManager.live_metrics)."""
        self._live.sources.append(read)

    def render(self) -> bytes:
        return generate_latest(self.registry)
