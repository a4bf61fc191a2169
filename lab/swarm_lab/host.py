"""Host plumbing: commands, processes, mounts, cgroups, bridge, netns and iptables.

Everything is done with the ordinary tools (ip, nsenter, iptables, umount) through
subprocess, so a failing step reports the tool's own message.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path

from swarm_lab import layout
from swarm_lab.errors import LabError

REQUIRED_TOOLS = {
    "dockerd": "docker.io",
    "containerd": "containerd",
    "docker": "docker.io",
    "ip": "iproute2",
    "nsenter": "util-linux",
    "iptables": "iptables",
    "busybox": "busybox-static",
    "mmdebstrap": "mmdebstrap",
    "prometheus": "prometheus",
}


def check_prerequisites() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, dockerd): run it as root")
    missing = [f"{tool} (package {pkg})" for tool, pkg in REQUIRED_TOOLS.items() if not shutil.which(tool)]
    if missing:
        raise LabError(
            f"not installed: {', '.join(missing)}: run scripts/install.sh "
            "(or apt-get install -y docker.io iptables busybox-static mmdebstrap prometheus)"
        )


def run(cmd: Sequence[str], *, step: str, check: bool = True, input: bytes | None = None) -> str:
    """Run ``cmd``; on failure raise a LabError naming ``step`` and the tool's stderr."""
    proc = subprocess.run(list(cmd), input=input, capture_output=True, check=False)
    if check and proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace").strip()
        raise LabError(f"{step} failed: `{' '.join(cmd)}` exited {proc.returncode}: {stderr}")
    return proc.stdout.decode(errors="replace")


def succeeds(cmd: Sequence[str]) -> bool:
    return subprocess.run(list(cmd), capture_output=True, check=False).returncode == 0


# --- processes ---------------------------------------------------------------------


def is_alive(pid: int) -> bool:
    """True if ``pid`` runs. A zombie counts as dead: PID 1 here reaps orphans late."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def kill_and_wait(pids: Iterable[int], sig: int = signal.SIGKILL, timeout: float = 15.0) -> list[int]:
    """Signal ``pids`` and wait until they are gone; returns the ones still alive at the deadline."""
    pending = {pid for pid in pids if pid != os.getpid()}
    for pid in pending:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        pending = {pid for pid in pending if is_alive(pid)}
        if pending:
            time.sleep(0.05)
    return sorted(pending)


def wait_http_ok(url: str, *, timeout: float, request_timeout: float = 2.0) -> str | None:
    """Poll ``url`` until it answers 200: None then, else the last error once ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=request_timeout) as response:
                if response.status == 200:
                    return None
                last = f"HTTP {response.status}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.25)
    return last


def read_pidfile(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def netns_pids(netns: str) -> list[int]:
    out = run(["ip", "netns", "pids", netns], step=f"listing processes of netns {netns}", check=False)
    return [int(line) for line in out.split() if line.isdigit()]


def children_named(parent: int, name: str) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields.get("PPid", "").strip() == str(parent) and fields.get("Name", "").strip() == name:
            found.append(int(status.parent.name))
    return found


def rss_kib(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


# --- cgroups (v1 or v2) --------------------------------------------------------------


def cgroup_dirs(name: str) -> list[Path]:
    """Every cgroup directory named ``name`` directly under a hierarchy root."""
    root = Path("/sys/fs/cgroup")
    candidates = [root / name, *(h / name for h in root.iterdir() if h.is_dir())]
    return [c for c in candidates if c.is_dir()]


def cgroup_pids(name: str) -> list[int]:
    pids: set[int] = set()
    for top in cgroup_dirs(name):
        for procs in top.rglob("cgroup.procs"):
            try:
                pids.update(int(p) for p in procs.read_text().split())
            except OSError:
                continue
    return sorted(pids)


def remove_cgroups(name: str) -> None:
    for top in cgroup_dirs(name):
        # Children first: a cgroup directory can only be removed once it is empty.
        for sub in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                sub.rmdir()
        try:
            top.rmdir()
        except OSError as exc:
            raise LabError(f"removing cgroup {top} failed: {exc} (a process still runs in it?)") from exc


# --- mounts ------------------------------------------------------------------------


def mounts_under(prefixes: Iterable[Path]) -> list[str]:
    roots = [str(p) for p in prefixes]
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = line.split()[4].replace("\\040", " ")
        if any(mount_point == r or mount_point.startswith(r + "/") for r in roots):
            found.append(mount_point)
    return found


def unmount_all_under(prefixes: Iterable[Path]) -> None:
    prefixes = list(prefixes)
    for _ in range(5):  # stacked mounts need several passes
        points = mounts_under(prefixes)
        if not points:
            return
        for point in sorted(set(points), key=lambda p: -len(p)):
            run(["umount", "-l", point], step=f"unmounting {point}", check=False)
    left = mounts_under(prefixes)
    if left:
        raise LabError(f"could not unmount {left[:5]}: see `grep {prefixes[0]} /proc/self/mountinfo`")


def ensure_tmpfs(path: Path, size: str) -> None:
    """Mount a tmpfs at ``path`` unless one is there: node data lives in RAM so teardown is
    one unmount instead of deleting ~25k image files (20+ s on a busy disk)."""
    path.mkdir(parents=True, exist_ok=True)
    if str(path) not in mounts_under([path]):
        run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "swl-state", str(path)],
            step=f"mounting a tmpfs on {path}",
        )


# dockerd 20.10 writes load-balancer sandbox files here whatever its --data-root; the
# directory is shared with every other dockerd on the host, so only our networks' go.
LB_FILES_DIR = Path("/var/lib/docker/network/files")


def remove_lb_files(network_ids: Iterable[str]) -> None:
    for network_id in network_ids:
        shutil.rmtree(LB_FILES_DIR / f"lb_{network_id}", ignore_errors=True)


# --- network -----------------------------------------------------------------------


def link_exists(name: str) -> bool:
    return succeeds(["ip", "link", "show", "dev", name])


def netns_exists(name: str) -> bool:
    return Path(f"/run/netns/{name}").exists()


def lab_netns() -> list[str]:
    out = run(["ip", "netns", "list"], step="listing network namespaces", check=False)
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if n.startswith(f"{layout.PREFIX}node")]


def ensure_bridge(
    bridge: str = layout.BRIDGE,
    address: str = layout.BRIDGE_IP,
    subnet: str = layout.SUBNET,
    comment: str = layout.IPTABLES_COMMENT,
) -> None:
    """The lab bridge with ``address``/24, forwarding on and accepted through it (the VM lab
    passes its own bridge and subnet)."""
    if not link_exists(bridge):
        routes = run(["ip", "-4", "route", "show", subnet], step="checking the lab subnet")
        if routes.strip():
            raise LabError(
                f"the lab subnet {subnet} is already routed on this host ({routes.strip()}): "
                "remove that interface or change SUBNET in lab/swarm_lab/layout.py"
            )
        run(["ip", "link", "add", bridge, "type", "bridge"], step="creating the lab bridge")
        run(["ip", "addr", "add", f"{address}/24", "dev", bridge], step="addressing the lab bridge")
    run(["ip", "link", "set", bridge, "up"], step="bringing the lab bridge up")
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
    for rule in _forward_rules(bridge, comment):
        if not succeeds(["iptables", "-C", *rule]):
            run(["iptables", "-I", *rule], step="allowing forwarding on the lab bridge")


def _forward_rules(bridge: str, comment: str) -> list[list[str]]:
    tag = ["-m", "comment", "--comment", comment, "-j", "ACCEPT"]
    return [
        ["FORWARD", "-i", bridge, *tag],
        ["FORWARD", "-o", bridge, *tag],
    ]


def remove_bridge(bridge: str = layout.BRIDGE, comment: str = layout.IPTABLES_COMMENT) -> None:
    for rule in _forward_rules(bridge, comment):
        while succeeds(["iptables", "-C", *rule]):
            run(["iptables", "-D", *rule], step="removing the lab's iptables rule")
    if link_exists(bridge):
        run(["ip", "link", "del", bridge], step="deleting the lab bridge")


def ensure_node_network(node: layout.Node) -> None:
    if not netns_exists(node.netns):
        run(["ip", "netns", "add", node.netns], step=f"creating netns {node.netns}")
    if not link_exists(node.host_veth):
        run(
            ["ip", "link", "add", node.host_veth, "type", "veth", "peer", "name", node.node_veth],
            step=f"creating veth for {node.name}",
        )
        run(["ip", "link", "set", node.node_veth, "netns", node.netns], step=f"moving veth into {node.netns}")
        run(["ip", "link", "set", node.host_veth, "master", layout.BRIDGE], step="attaching veth to bridge")
    run(["ip", "link", "set", node.host_veth, "up"], step=f"bringing {node.host_veth} up")
    in_ns = ["ip", "-n", node.netns]
    run([*in_ns, "link", "set", "lo", "up"], step=f"loopback in {node.netns}")
    if node.ip not in run([*in_ns, "-4", "addr", "show"], step="reading node addresses"):
        run([*in_ns, "link", "set", node.node_veth, "name", "eth0"], step="naming node eth0", check=False)
        run([*in_ns, "addr", "add", f"{node.ip}/24", "dev", "eth0"], step=f"addressing {node.name}")
    run([*in_ns, "link", "set", "eth0", "up"], step=f"bringing {node.name} eth0 up")
    run([*in_ns, "route", "replace", "default", "via", layout.BRIDGE_IP], step=f"routing {node.name}")


def set_host_link(node: layout.Node, up: bool) -> None:
    state = "up" if up else "down"
    run(["ip", "link", "set", node.host_veth, state], step=f"setting {node.host_veth} {state}")


def host_link_up(node: layout.Node) -> bool:
    out = run(["ip", "-o", "link", "show", "dev", node.host_veth], step="reading link", check=False)
    return "state UP" in out or ",UP" in out.split(">")[0]


def remove_node_network(node: layout.Node) -> None:
    if netns_exists(node.netns):
        run(["ip", "netns", "del", node.netns], step=f"deleting netns {node.netns}")
    # The host veth normally goes with its peer's namespace, but the kernel tears a namespace
    # down asynchronously: the link may still show, then vanish under our own `ip link del`.
    deadline = time.monotonic() + 10.0
    while link_exists(node.host_veth):
        run(["ip", "link", "del", node.host_veth], step=f"deleting {node.host_veth}", check=False)
        if time.monotonic() > deadline:
            raise LabError(f"{node.host_veth} is still there 10 s after deleting it and its namespace")
        time.sleep(0.1)  # polling the kernel's own cleanup; the loop condition decides
