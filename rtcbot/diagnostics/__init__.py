"""`!call diag`: check from the bot's seat everything a MatrixRTC call in this room depends on.

The checks follow what a MatrixRTC call needs of its room and servers (docs/DEPLOYMENT.md):
delayed events (advertised, maximum delay, a real schedule → restart → cancel round trip),
SFU discovery (transports endpoint, legacy well-known), the authorization service (health,
endpoint generation, an OpenID round trip, the issued JWT), LiveKit reachability, power levels
and the bot's state key, the bot's own membership, sticky events, clock skew and ghosts.

They run concurrently, each with its own timeout, and the report is one message edited in
place as they finish. Secrets policy: the report and the log never carry a secret, token or
JWT; whatever is rendered goes through `redact` last, with every secret this run has seen.

Modules: `report` (lines, statuses, rendering, redaction), `pure_checks` (judging answers),
`probe` (what every check group receives), one module per check group, and `runner` (the
guard, the report's edits, the `Diagnostics` command).
"""

from ..redaction import REDACTED, redact
from .probe import Probe, RunState
from .pure_checks import check_clock, check_delayed_support, check_jwt_claims, check_sticky
from .report import (
    AUTH_ENDPOINTS,
    AUTH_HEALTH,
    CLOCK,
    DELAYED,
    FAIL,
    GHOSTS,
    ICONS,
    JWT,
    LINES,
    OK,
    OPENID,
    OWN_MEMBERSHIP,
    PENDING_ICON,
    PERM_BOT,
    PERM_MEMBERS,
    ROUND_TRIP,
    SFU,
    SKIP,
    STATE_KEY,
    STICKY,
    TRANSPORTS,
    WARN,
    WELL_KNOWN,
    Check,
    Status,
    fmt_ms,
    http_url,
    render,
)
from .runner import CheckRunner, Diagnostics

__all__ = [
    "AUTH_ENDPOINTS",
    "AUTH_HEALTH",
    "CLOCK",
    "DELAYED",
    "FAIL",
    "GHOSTS",
    "ICONS",
    "JWT",
    "LINES",
    "OK",
    "OPENID",
    "OWN_MEMBERSHIP",
    "PENDING_ICON",
    "PERM_BOT",
    "PERM_MEMBERS",
    "REDACTED",
    "ROUND_TRIP",
    "SFU",
    "SKIP",
    "STATE_KEY",
    "STICKY",
    "TRANSPORTS",
    "WARN",
    "WELL_KNOWN",
    "Check",
    "CheckRunner",
    "Diagnostics",
    "Probe",
    "RunState",
    "Status",
    "check_clock",
    "check_delayed_support",
    "check_jwt_claims",
    "check_sticky",
    "fmt_ms",
    "http_url",
    "redact",
    "render",
]
