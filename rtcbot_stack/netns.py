"""An isolated network namespace for the SFU and every WebRTC peer (the project's network rule:
nothing but loopback and namespaces the run made itself).

WebRTC gathers candidates on every interface and LiveKit hands out public STUN servers, so
tests and CI run the whole stack inside a namespace with a veth pair as its only non-loopback
interfaces and no default route: nothing can leave the namespace, even by mistake.

    python -m rtcbot_stack.netns [--forward=8008,29316] -- <command …>

creates a fresh namespace, runs the command inside it (with RTCBOT_NETNS / RTCBOT_NODE_IP set),
then kills whatever is left in the namespace and deletes it.

As root it is a named namespace (`ip netns`). As any other user it is an unprivileged user
namespace (`unshare --user --map-current-user`) with its own network, PID and mount namespaces:
the same veth pair and no route out; the command keeps the caller's uid (PostgreSQL refuses
root), and when it ends the kernel kills everything left in the PID namespace. Where neither
works, nothing runs and the message says what would make it work.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

ENV_NAME = "RTCBOT_NETNS"
ENV_NODE_IP = "RTCBOT_NODE_IP"


@dataclass(frozen=True)
class NetNs:
    name: str
    node_ip: str  # the SFU's address (veth end rtc0)
    peer_ip: str  # the other veth end (rtc1)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def current() -> NetNs | None:
    """The namespace this process runs in, as announced by the wrapper, or None."""
    name = os.environ.get(ENV_NAME)
    node_ip = os.environ.get(ENV_NODE_IP)
    if not name or not node_ip:
        return None
    return NetNs(name, node_ip, node_ip.rsplit(".", 1)[0] + ".2")


def create(name: str | None = None) -> NetNs:
    if os.geteuid() != 0:
        raise PermissionError("creating a network namespace needs root (ip netns add)")
    name = name or f"rtcbot-{os.getpid()}"
    node_ip, peer_ip = _addresses()
    _ip("netns", "del", name, check=False)
    _ip("netns", "add", name)
    try:
        cmds = [
            ("link", "set", "lo", "up"),
            ("link", "add", "rtc0", "type", "veth", "peer", "name", "rtc1"),
            ("addr", "add", f"{node_ip}/24", "dev", "rtc0"),
            ("addr", "add", f"{peer_ip}/24", "dev", "rtc1"),
            ("link", "set", "rtc0", "up"),
            ("link", "set", "rtc1", "up"),
        ]
        for cmd in cmds:
            _ip("netns", "exec", name, "ip", *cmd)
    except subprocess.CalledProcessError as e:
        _ip("netns", "del", name, check=False)
        raise RuntimeError(f"could not set up namespace {name}: {e.stderr.strip()}") from e
    return NetNs(name, node_ip, peer_ip)


def pids(name: str) -> list[int]:
    out = _ip("netns", "pids", name, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def delete(name: str) -> None:
    """Kill every process left in the namespace, then remove it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = pids(name)
        if not left:
            break
        for pid in left:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while pids(name) and time.monotonic() < deadline:
            time.sleep(0.1)
    _ip("netns", "del", name, check=False)


def _addresses() -> tuple[str, str]:
    # A subnet derived from the pid keeps parallel runs apart.
    octet = os.getpid() % 250 + 1
    return f"10.213.{octet}.1", f"10.213.{octet}.2"


_UNSHARE = [
    "unshare", "--user", "--map-current-user", "--keep-caps", "--net",
    "--pid", "--fork", "--kill-child", "--mount", "--mount-proc",
]  # fmt: skip


def user_namespaces_work() -> bool:
    try:
        probe = subprocess.run([*_UNSHARE, "--", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


NO_NAMESPACE = """\
[netns] cannot make a network namespace here, so the stack tests cannot run isolated.
  Either run as root (ip netns), or allow unprivileged user namespaces:
      sudo sysctl -w kernel.unprivileged_userns_clone=1   (Debian/Ubuntu)
      sudo sysctl -w user.max_user_namespaces=15000
      (and, on Ubuntu 24.04+, kernel.apparmor_restrict_unprivileged_userns=0)
  or, knowingly, run on host networking: make test NETWORK=host
  (the stack then binds loopback only, on free ports)."""


def run_in_user_namespace(argv: list[str]) -> int:
    node_ip, peer_ip = _addresses()
    name = f"userns-{os.getpid()}"
    setup = " && ".join(
        [
            "ip link set lo up",
            "ip link add rtc0 type veth peer name rtc1",
            f"ip addr add {node_ip}/24 dev rtc0",
            f"ip addr add {peer_ip}/24 dev rtc1",
            "ip link set rtc0 up",
            "ip link set rtc1 up",
        ]
    )
    env = {**os.environ, ENV_NAME: name, ENV_NODE_IP: node_ip}
    print(f"[netns] running in user namespace {name} (SFU address {node_ip})", flush=True)
    proc = subprocess.Popen(
        [*_UNSHARE, "--", "sh", "-c", f'{setup} && exec "$@"', "sh", *argv], env=env
    )

    def forward(signum: int, _frame: object) -> None:
        proc.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    code = proc.wait()
    print(f"[netns] user namespace {name} ended", flush=True)
    return code


def run_isolated(argv: list[str], forward_ports: list[int] | None = None) -> int:
    if os.geteuid() != 0:
        if forward_ports:
            print("[netns] forwarding ports needs root; use NETWORK=host", file=sys.stderr)
            return 2
        if not user_namespaces_work():
            print(NO_NAMESPACE, file=sys.stderr)
            return 2
        return run_in_user_namespace(argv)
    ns = create()
    env = {**os.environ, ENV_NAME: ns.name, ENV_NODE_IP: ns.node_ip}
    print(f"[netns] running in namespace {ns.name} (SFU address {ns.node_ip})", flush=True)
    if forward_ports:
        from .portal import Portal

        Portal(ns.name, forward_ports).start()
        env["RTCBOT_FORWARDED_PORTS"] = ",".join(map(str, forward_ports))
    proc = subprocess.Popen(["ip", "netns", "exec", ns.name, *argv], env=env)

    def forward(signum: int, _frame: object) -> None:
        proc.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    try:
        return proc.wait()
    finally:
        delete(ns.name)
        print(f"[netns] namespace {ns.name} removed", flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    forward: list[int] = []
    if args and args[0].startswith("--forward="):
        # host loopback ports to forward into the namespace (make run: HTTP of the stack)
        forward = [int(p) for p in args.pop(0).split("=", 1)[1].split(",") if p]
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        print(__doc__)
        sys.exit(2)
    sys.exit(run_isolated(args, forward))
