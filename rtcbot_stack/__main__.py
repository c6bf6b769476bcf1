"""`make run`: bring the whole stack up on loopback and stay in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from types import FrameType

from . import netns
from .element_call_web import (
    EC_DIST,
    ELEMENT_CALL_PORT,
    StaticServer,
    demo_login,
    element_call_config,
)
from .paths import STATE_DIR
from .stack import Stack, StackSettings
from .supervisor import describe_exit, supervise_maubot


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m rtcbot_stack", description=__doc__)
    parser.add_argument("--state-dir", default=str(STATE_DIR))
    parser.add_argument(
        "--node-ip",
        default=os.environ.get("LIVEKIT_NODE_IP"),
        help="address LiveKit advertises to WebRTC clients on host networking "
        "(default 127.0.0.1; use your LAN address to call in from a browser)",
    )
    parser.add_argument(
        "--no-delayed-events",
        action="store_true",
        help="start Synapse without MSC4140 delayed events",
    )
    args = parser.parse_args()

    from pathlib import Path

    settings = StackSettings(
        state_dir=Path(args.state_dir),
        netns=netns.current(),
        fixed_ports=True,
        delayed_events=not args.no_delayed_events,
        node_ip=args.node_ip,
    )
    stop_requested = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    print("starting the rtcbot stack (Synapse, LiveKit, maubot) …", flush=True)
    stack = Stack(settings)
    stack.start()
    info = stack.describe()
    demo = info["users"][0]
    element_call: StaticServer | None = None
    if EC_DIST.is_dir():
        login = demo_login(
            stack.synapse.login, demo["user_id"], demo["password"], info["demo_room"]
        )
        hs = info["homeserver"]
        element_call = StaticServer(
            EC_DIST,
            element_call_config(hs["url"], hs["server_name"]),
            port=ELEMENT_CALL_PORT,
            demo=login,
        )
        ec_line = (
            f"  Element Call    {login.link(element_call.url)}\n"
            "                  (open it in a browser on this machine: it logs the demo user in "
            "and opens the demo room's call)"
        )
    else:
        ec_line = "  Element Call    not installed (`make setup` runs `npm ci` for it)"
    forwarded = os.environ.get("RTCBOT_FORWARDED_PORTS")
    forward_note = (
        f"The stack runs in network namespace {info['netns']}; its ports {forwarded} are "
        "forwarded to this machine's 127.0.0.1,\nso the URLs above work from here, Element "
        "Call's page too; but call media stays inside the namespace:\nto talk in a call from "
        "this machine's browser, run `make run NETWORK=host`.\n\n"
        if forwarded
        else ""
    )
    print(
        f"""
rtcbot stack is up in {info["timings_s"]["total"]} s   (network namespace: {info["netns"] or "none, host networking"})

  Homeserver      {info["homeserver"]["url"]}   (server name {info["homeserver"]["server_name"]})
  maubot admin    {info["maubot"]["admin_url"]}   user {info["maubot"]["admin_user"]} / password {info["maubot"]["admin_password"]}
  LiveKit SFU     {info["livekit"]["url"]}   (media on {info["livekit"]["node_ip"]})
  Auth service    {info["auth_service_url"]}
  Bot             {info["bot"]["user_id"]}   (end-to-end encryption: device {info["bot"]["device_id"]} cross-signed; recovery key kept in {stack.secrets_path})
  Demo user       {demo["user_id"]} / password {demo["password"]}
  Demo room       {info["demo_room"]}
{ec_line}

First thing to type: in the demo room (Element Call's link above, or any Matrix client pointed
at the homeserver URL, or curl, see README) send:   !call help

{forward_note}Everything above, with tokens, is in {settings.state_dir / "stack.json"}.
Logs: {settings.state_dir}/{{synapse,livekit,maubot}}/*.log      Ctrl-C stops the stack.
maubot is supervised: when it exits it is restarted (try  kill -9 $(jq .maubot.pid {settings.state_dir / "stack.json"})).
""",
        flush=True,
    )
    # maubot is supervised: a crash (or a kill -9 to try the bot's delayed leave) is reported
    # and maubot restarted while Synapse and LiveKit stay up. Synapse's exit ends the stack.
    supervisor = supervise_maubot(stack, stopping=lambda: stop_requested)
    livekit_reported = False
    status = 0
    try:
        while not stop_requested:
            synapse = stack.synapse.child
            if not synapse.alive():
                print(
                    f"Synapse {describe_exit(synapse.returncode)}; stopping the stack. "
                    f"Last lines of {synapse.log_path}:\n{synapse.log_tail(12)}",
                    file=sys.stderr,
                )
                status = 1
                break
            livekit = stack.livekit.child
            if livekit is not None and not livekit.alive() and not livekit_reported:
                livekit_reported = True
                print(
                    f"LiveKit {describe_exit(livekit.returncode)} (not restarted; calls have "
                    f"no SFU now). Last lines of {livekit.log_path}:\n{livekit.log_tail(12)}",
                    file=sys.stderr,
                )
            supervisor.poll()
            if supervisor.gave_up:
                print("maubot keeps crashing: stopping the stack.", file=sys.stderr, flush=True)
                status = 1
                break
            time.sleep(0.2)  # the polling interval of the supervision
    finally:
        print("stopping …", flush=True)
        if element_call is not None:
            element_call.close()
        stack.stop()
        print("stopped.", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
