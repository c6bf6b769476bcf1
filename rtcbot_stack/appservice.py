"""`make appservice-registration`: rtcbot's MSC4512 application service registration.

Synapse ≥ 1.161 gives clients (Element Call ≥ 0.28) and the bot their LiveKit token at
`/_matrix/client/unstable/io.element.msc4195/rtc/livekit/get_token` when a transport has
`url`; with `experimental_features.msc4512_enabled` it proxies that path to the application
service registered with `io.element.msc4512.proxy_prefix: rtc/livekit`. This writes such a
registration for rtcbot's authorization service (auth/homeserver_tokens.py) with fresh
tokens, and prints the plugin config line that goes with it. No events are pushed to it
(`url: null`) and it claims no users but its own sender.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from pathlib import Path
from typing import Any

PROXY_PREFIX = "rtc/livekit"


def registration(
    proxy_url: str, *, hs_token: str, as_token: str, sender_localpart: str = "rtcbot-rtc"
) -> dict[str, Any]:
    """The registration Synapse reads (`app_service_config_files`); `proxy_url` is the
    plugin's web base (maubot: `<public_url>/_matrix/maubot/plugin/<instance id>`)."""
    if not proxy_url.startswith(("http://", "https://")):
        raise ValueError("the proxy URL must be the plugin's http(s) base URL")
    return {
        "id": "rtcbot-rtc",
        "url": None,
        "as_token": as_token,
        "hs_token": hs_token,
        "sender_localpart": sender_localpart,
        "namespaces": {"users": [], "aliases": [], "rooms": []},
        "rate_limited": False,
        "io.element.msc4512.proxy_prefix": PROXY_PREFIX,
        "io.element.msc4512.proxy_url": proxy_url.rstrip("/"),
    }


def new_tokens() -> tuple[str, str]:
    return secrets.token_urlsafe(32), secrets.token_urlsafe(32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make appservice-registration", description=__doc__)
    parser.add_argument("--proxy-url", required=True, help="the plugin's web base URL")
    parser.add_argument("--out", default="rtcbot-appservice.yaml")
    args = parser.parse_args(argv)
    hs_token, as_token = new_tokens()
    try:
        reg = registration(args.proxy_url, hs_token=hs_token, as_token=as_token)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.touch(mode=0o600)
    out.write_text(json.dumps(reg, indent=1) + "\n")  # JSON is YAML
    print(f"Wrote {out} (mode 0600; it holds the tokens).")
    print("Synapse homeserver.yaml:")
    print(f"  app_service_config_files: [{out.resolve()}]")
    print("  experimental_features: {msc4512_enabled: true}")
    print("rtcbot plugin config (auth_service section):")
    print(f'  appservice_hs_token: "{hs_token}"')
    return 0


if __name__ == "__main__":
    sys.exit(main())
