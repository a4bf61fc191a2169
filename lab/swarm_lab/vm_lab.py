"""The VM lab (``lab up --backend vm``): Swarm nodes with a real kernel, so the routing mesh runs.

Each node is a QEMU guest (vm_qemu) on the ``swvbr0`` bridge; its dockerd listens on the lab
bridge only (tcp://10.79.0.1N:2375), the project's IPVS agent runs in it from the shared
checkout (vm_init), and Prometheus runs on the host (10.79.0.1:9090) scraping the agents and
the engines. Up is idempotent; down removes every process, tap, bridge and iptables rule
(the image cache stays).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import docker

from swarm_lab import host, images, vm_exec, vm_image, vm_layout, vm_prometheus, vm_qemu
from swarm_lab.errors import LabError
from swarm_lab.vm_layout import VmNode

VmNodeDownMode = Literal["link", "kill", "stop"]
BOOT_TIMEOUT = 300.0  # TCG: ~40 s to dockerd alone, minutes when the host's CPU is shared
# 10 s, not the netns lab's 1 s: under TCG on a shared 2-core host a 1 s heartbeat is missed
# often enough that the node flaps Down and its tasks are rescheduled in a loop (seen).
HEARTBEAT_NS = 10_000_000_000
NETWORK = "lab-net"
BUSYBOX = images.BUSYBOX


@dataclass(frozen=True)
class VmLabInfo:
    """What a user or a test needs to talk to the VM lab."""

    nodes: int
    manager_url: str
    node_urls: list[str]
    node_ips: list[str]
    agent_urls: list[str]
    prometheus_url: str
    accel: str
    network: str = NETWORK
    images: dict[str, str] = field(default_factory=lambda: {"busybox": BUSYBOX})


def _log(message: str) -> None:
    print(f"lab: {message}", flush=True)


def _state() -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(vm_layout.STATE_FILE.read_text())
        return state
    except (FileNotFoundError, ValueError):
        return None


def recorded_node_count() -> int | None:
    state = _state()
    return int(state["nodes"]) if state else None


def _info(count: int, accel: str) -> VmLabInfo:
    nodes = vm_layout.nodes(count)
    return VmLabInfo(
        nodes=count,
        manager_url=nodes[0].docker_url,
        node_urls=[n.docker_url for n in nodes],
        node_ips=[n.ip for n in nodes],
        agent_urls=[n.agent_url for n in nodes],
        prometheus_url=vm_layout.PROMETHEUS_URL,
        accel=accel,
    )


def info() -> VmLabInfo:
    state = _state()
    if state is None:
        raise LabError("the VM lab is not up: run `swarm-autoscaler lab up --backend vm`")
    return _info(int(state["nodes"]), str(state.get("accel", "tcg")))


@contextlib.contextmanager
def client(node: VmNode, timeout: float = 30.0) -> Iterator[docker.DockerClient]:
    """A Docker SDK client for the node's engine over the lab bridge, closed on exit."""
    connection = docker.DockerClient(base_url=node.docker_url, timeout=int(timeout), version="1.41")
    try:
        yield connection
    finally:
        connection.close()


def _answers(node: VmNode) -> bool:
    try:
        with client(node, timeout=3) as c:
            return bool(c.ping())
    except Exception:  # any failure means "not answering yet"
        return False


def _check_prerequisites(image: vm_image.VmImage) -> None:
    missing = [t for t in ("qemu-system-x86_64", "cpio", "prometheus") if not shutil.which(t)]
    if missing:
        raise LabError(f"not installed: {', '.join(missing)}: run scripts/install.sh")
    here = "{}.{}".format(*sys.version_info[:2])
    if here != image.python:
        raise LabError(
            f"the VM runs the agent with its Python {image.python} on this venv's packages, but the "
            f"venv is Python {here}: make the venv with Python {image.python} (PYTHON=python3.11 "
            "scripts/install.sh)"
        )


def up(node_count: int = 1) -> VmLabInfo:
    """Create (or repair) the VM lab. Idempotent: what already works is left as it is."""
    host.check_prerequisites()
    recorded = recorded_node_count()
    if recorded is not None and recorded != node_count:
        raise LabError(
            f"the VM lab is up with {recorded} nodes, not {node_count}: "
            "run `swarm-autoscaler lab down --backend vm` first"
        )
    nodes = vm_layout.nodes(node_count)
    started = time.monotonic()
    image = vm_image.ensure_image()
    _check_prerequisites(image)
    vm_layout.RUN_DIR.mkdir(parents=True, exist_ok=True)
    accel = vm_qemu.choose_accel(image)
    vm_layout.STATE_FILE.write_text(json.dumps({"nodes": node_count, "accel": accel}))
    host.ensure_bridge(vm_layout.BRIDGE, vm_layout.BRIDGE_IP, vm_layout.SUBNET, vm_layout.IPTABLES_COMMENT)
    for node in nodes:
        vm_qemu.ensure_tap(node)
        vm_qemu.start(node, image, accel)
    for node in nodes:
        wait_docker(node)
    _log(f"{node_count} VM node(s) ({accel}) answering in {time.monotonic() - started:.0f}s")
    ensure_swarm(nodes)
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        list(pool.map(ensure_busybox, nodes))
    vm_prometheus.ensure_running(nodes)
    for node in nodes:
        wait_agent(node)
    lab = _info(node_count, accel)
    _log(f"VM lab up in {time.monotonic() - started:.0f}s; Prometheus at {lab.prometheus_url}")
    return lab


def wait_docker(node: VmNode, timeout: float = BOOT_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _answers(node):
            return
        if vm_qemu.qemu_pid(node) is None:
            raise LabError(
                f"node {node.index}'s VM exited while booting; console:\n{vm_qemu.console_tail(node)}"
            )
        time.sleep(0.5)
    raise LabError(
        f"dockerd of VM node {node.index} did not answer on {node.docker_url} within {timeout:.0f}s; "
        f"console ({node.console_log}):\n{vm_qemu.console_tail(node)}"
    )


def wait_agent(node: VmNode, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(node.agent_url, timeout=60) as response:
                if response.status == 200:
                    return
        except OSError as exc:
            last = str(exc)
        time.sleep(0.5)
    log = vm_exec.run(node, ["tail", "-n", "20", "/var/log/ipvs-agent.log"]).stdout
    raise LabError(f"the IPVS agent on node {node.index} did not answer at {node.agent_url} ({last}):\n{log}")


def ensure_swarm(nodes: list[VmNode]) -> None:
    manager = nodes[0]
    with client(manager) as c:
        if c.info()["Swarm"]["LocalNodeState"] != "active":
            c.swarm.init(
                advertise_addr=manager.ip,
                listen_addr=f"{manager.ip}:2377",
                default_addr_pool=[vm_layout.ADDRESS_POOL],
                subnet_size=24,
                dispatcher_heartbeat_period=HEARTBEAT_NS,
            )
        c.swarm.reload()
        token = c.swarm.attrs["JoinTokens"]["Worker"]
    for node in nodes[1:]:
        _join(node, manager, token)
    wait_nodes_ready(len(nodes))
    with client(manager) as c:
        if not c.networks.list(names=[NETWORK]):
            c.networks.create(NETWORK, driver="overlay", attachable=True, scope="swarm")


def _join(node: VmNode, manager: VmNode, token: str) -> None:
    with client(node) as worker:
        if worker.info()["Swarm"]["LocalNodeState"] == "active":
            return
        worker.swarm.join(
            remote_addrs=[f"{manager.ip}:2377"],
            join_token=token,
            listen_addr=f"{node.ip}:2377",
            advertise_addr=node.ip,
        )


def node_states() -> list[dict[str, str]]:
    with client(vm_layout.MANAGER, timeout=10) as c:
        return [
            {
                "id": n.attrs["ID"],
                "hostname": n.attrs["Description"]["Hostname"],
                "role": n.attrs["Spec"]["Role"],
                "state": n.attrs["Status"]["State"],
                "addr": n.attrs["Status"].get("Addr", ""),
            }
            for n in c.nodes.list()
        ]


def wait_nodes_ready(count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    states: list[dict[str, str]] = []
    while time.monotonic() < deadline:
        states = node_states()
        if sum(s["state"] == "ready" for s in states) >= count:
            return
        time.sleep(0.5)
    raise LabError(
        f"VM swarm: only {[s['hostname'] + ':' + s['state'] for s in states]} after {timeout:.0f}s"
    )


def ensure_busybox(node: VmNode) -> None:
    """lab/busybox on the node (2 MB, imported from the netns lab's cached rootfs tarball)."""
    with client(node) as c:
        try:
            c.images.get(BUSYBOX)
            return
        except docker.errors.ImageNotFound:
            pass
        with images.busybox_rootfs().open("rb") as data:
            c.api.import_image_from_data(data.read(), repository=BUSYBOX, tag="latest")


def down() -> None:
    """Remove everything the VM lab made except the image cache. Safe at any time, twice."""
    indexes = set(range(1, (recorded_node_count() or 0) + 1))
    if vm_layout.RUN_DIR.exists():
        indexes |= {int(p.name[1:]) for p in vm_layout.RUN_DIR.glob("n[0-9]*")}
    indexes |= {i for i in range(1, vm_layout.MAX_NODES + 1) if host.link_exists(VmNode(i).tap)}
    if vm_layout.RUN_DIR.exists():
        stop_loads()
    vm_prometheus.stop()
    for i in sorted(indexes):
        vm_qemu.stop(VmNode(i))
        vm_qemu.remove_tap(VmNode(i))
    host.remove_bridge(vm_layout.BRIDGE, vm_layout.IPTABLES_COMMENT)
    shutil.rmtree(vm_layout.RUN_DIR, ignore_errors=True)
    if vm_layout.RUN_DIR.exists():
        raise LabError(f"could not remove {vm_layout.RUN_DIR}: check `lsof +D {vm_layout.RUN_DIR}`")


def is_up() -> bool:
    count = recorded_node_count()
    if count is None:
        return False
    try:
        return sum(s["state"] == "ready" for s in node_states()) >= count
    except Exception:  # manager not answering: not up
        return False


def status() -> dict[str, Any]:
    state = _state()
    if state is None:
        return {"up": False}
    count = int(state["nodes"])
    report: dict[str, Any] = {"up": True, "backend": "vm", **asdict(_info(count, str(state.get("accel"))))}
    report["vms"] = {
        n.hostname: {"qemu_pid": vm_qemu.qemu_pid(n), "link_up": vm_qemu.link_up(n)}
        for n in vm_layout.nodes(count)
    }
    pids = [p for p in (vm_qemu.qemu_pid(n) for n in vm_layout.nodes(count)) if p is not None]
    report["memory_rss_mib"] = round(host.rss_kib(pids) / 1024, 1)
    try:
        report["swarm_nodes"] = node_states()
        with client(vm_layout.MANAGER, timeout=10) as c:
            report["services"] = [
                {
                    "name": s.name,
                    "replicas": s.attrs["Spec"].get("Mode", {}).get("Replicated", {}).get("Replicas"),
                    "running": sum(
                        t["Status"]["State"] == "running"
                        for t in s.tasks(filters={"desired-state": "running"})
                    ),
                }
                for s in c.services.list()
            ]
    except Exception as exc:  # status must report a broken lab, not crash on it
        report["error"] = f"manager not answering: {exc}"
    return report


def _node(n: int) -> VmNode:
    count = recorded_node_count()
    if count is None:
        raise LabError("the VM lab is not up: run `swarm-autoscaler lab up --backend vm`")
    if not 1 <= n <= count:
        raise LabError(f"node {n} does not exist: the VM lab has nodes 1..{count}")
    return VmNode(n)


def exec_on(n: int, argv: list[str], timeout: float = 300.0) -> vm_exec.ExecResult:
    return vm_exec.run(_node(n), argv, timeout)


def node_down(n: int, mode: VmNodeDownMode = "link") -> None:
    """Fail node ``n``: ``link`` sets its tap down, ``kill`` powers the VM off (its RAM disk,
    so its engine state, is lost), ``stop`` SIGTERMs its dockerd."""
    node = _node(n)
    if mode == "link":
        vm_qemu.set_link(node, up=False)
    elif mode == "kill":
        vm_qemu.stop(node)
    elif mode == "stop":
        vm_exec.run(node, ["sh", "-c", "kill -TERM $(pidof dockerd) 2>/dev/null; true"])
        deadline = time.monotonic() + 60.0
        while _answers(node):
            if time.monotonic() > deadline:
                raise LabError(f"dockerd of VM node {n} still answers 60 s after SIGTERM")
            time.sleep(0.5)
    else:
        raise LabError(f"unknown node_down mode {mode!r}: use link, kill or stop")


def node_up(n: int) -> None:
    """Repair node ``n``: link up, VM running (booted anew and rejoined after ``kill``), dockerd up."""
    node = _node(n)
    vm_qemu.set_link(node, up=True)
    if vm_qemu.qemu_pid(node) is None:
        if node.is_manager:
            raise LabError(
                "the manager VM was powered off and its swarm lived in its RAM disk: "
                "run `lab down --backend vm` and `lab up --backend vm` "
                "(use --mode link or stop for the manager)"
            )
        vm_qemu.start(node, vm_image.ensure_image(), info().accel)
        wait_docker(node)
        _forget_down_node(node)
        with client(vm_layout.MANAGER) as c:
            token = c.swarm.attrs["JoinTokens"]["Worker"]
        _join(node, vm_layout.MANAGER, token)
        ensure_busybox(node)
        wait_agent(node)
        return
    if not _answers(node):
        vm_exec.run(node, ["swl-start-dockerd"])
        wait_docker(node)


def _forget_down_node(node: VmNode) -> None:
    """The powered-off node's old entry (same hostname, Down) is removed before it rejoins."""
    with client(vm_layout.MANAGER) as c:
        for entry in c.nodes.list(filters={"name": node.hostname}):
            if entry.attrs["Status"]["State"] == "down":
                entry.remove(force=True)


def published_port(service: str) -> int:
    """The first ingress-published port of ``service`` (the load generator's target)."""
    with client(vm_layout.MANAGER) as c:
        found = [s for s in c.services.list(filters={"name": service}) if s.name == service]
        if not found:
            raise LabError(f"no service {service!r} on the VM lab")
        ports = found[0].attrs.get("Endpoint", {}).get("Ports") or []
    for port in ports:
        if port.get("PublishMode", "ingress") == "ingress" and port.get("PublishedPort"):
            return int(port["PublishedPort"])
    raise LabError(f"service {service!r} publishes no ingress port: add one (`--publish 8080:80`)")


def _load_pidfile(service: str) -> Path:
    return vm_layout.RUN_DIR / f"load-{service}.pid"


def set_load(
    service: str, connections: int = 0, rps: float = 0.0, duration_s: float = 600.0, node: int = 1
) -> None:
    """Hold ``connections`` open and offer ``rps`` requests/s to ``service``'s published port on
    node ``node`` (a host process, bounded by ``duration_s``); all zero stops it."""
    if connections < 0 or rps < 0:
        raise LabError(f"--connections and --rps must be >= 0, got {connections} and {rps}")
    target = _node(node)
    pidfile = _load_pidfile(service)
    running = host.read_pidfile(pidfile)
    if running is not None and host.is_alive(running):
        host.kill_and_wait([running], signal.SIGTERM)
    pidfile.unlink(missing_ok=True)
    if connections == 0 and rps == 0:
        return
    port = published_port(service)
    argv = [sys.executable, "-m", "swarm_lab.vm_load", "--host", target.ip, "--port", str(port)]
    argv += ["--connections", str(connections), "--rps", f"{rps:g}", "--duration", f"{duration_s:g}"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
    pidfile.write_text(f"{proc.pid}\n")


def stop_loads() -> None:
    for pidfile in vm_layout.RUN_DIR.glob("load-*.pid"):
        running = host.read_pidfile(pidfile)
        if running is not None and host.is_alive(running):
            host.kill_and_wait([running], signal.SIGKILL)
        pidfile.unlink(missing_ok=True)
