"""Bring the lab up, take it down, report on it, and break/repair nodes for failure tests."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from swarm_lab import daemons, host, images, layout, swarm
from swarm_lab.errors import LabError

NodeDownMode = Literal["link", "kill", "stop"]


@dataclass(frozen=True)
class LabInfo:
    """What a user or a test needs to talk to the lab."""

    nodes: int
    manager_url: str
    node_urls: list[str]
    node_ips: list[str]
    prometheus_url: str
    network: str = layout.NETWORK
    images: dict[str, str] = field(
        default_factory=lambda: {
            "busybox": images.BUSYBOX,
            "python": images.PYTHON,
            "web": images.WEB,
            "loadgen": images.LOADGEN,
            "prometheus": images.PROMETHEUS,
        }
    )


def _info(count: int) -> LabInfo:
    nodes = layout.nodes(count)
    return LabInfo(
        nodes=count,
        manager_url=nodes[0].docker_url,
        node_urls=[n.docker_url for n in nodes],
        node_ips=[n.ip for n in nodes],
        prometheus_url=f"http://{nodes[0].ip}:{layout.PROMETHEUS_PORT}",
    )


def recorded_node_count() -> int | None:
    try:
        return int(json.loads(layout.STATE_FILE.read_text())["nodes"])
    except (FileNotFoundError, ValueError, KeyError):
        return None


def info() -> LabInfo:
    count = recorded_node_count()
    if count is None:
        raise LabError("the lab is not up: run `swarm-autoscaler lab up`")
    return _info(count)


def _log(message: str) -> None:
    print(f"lab: {message}", flush=True)


def up(node_count: int = 3, sample: bool = False) -> LabInfo:
    """Create (or repair) the lab. Idempotent: what already works is left as it is."""
    host.check_prerequisites()
    recorded = recorded_node_count()
    if recorded is not None and recorded != node_count:
        raise LabError(
            f"the lab is up with {recorded} nodes, not {node_count}: run `swarm-autoscaler lab down` first"
        )
    nodes = layout.nodes(node_count)
    started = time.monotonic()
    layout.RUN_DIR.mkdir(parents=True, exist_ok=True)
    host.ensure_tmpfs(layout.STATE_DIR, layout.STATE_TMPFS_SIZE)
    layout.STATE_FILE.write_text(json.dumps({"nodes": node_count}))
    host.ensure_bridge()
    for node in nodes:
        host.ensure_node_network(node)
        daemons.start(node)
    _log(f"{node_count} dockerd up in {time.monotonic() - started:.1f}s")
    swarm.ensure_swarm(nodes)
    images.ensure_images(nodes)
    swarm.ensure_prometheus(nodes)
    if sample:
        swarm.deploy_sample()
    lab = _info(node_count)
    wait_prometheus_ready(lab.prometheus_url)
    _log(f"up in {time.monotonic() - started:.1f}s; Prometheus at {lab.prometheus_url}")
    return lab


def wait_prometheus_ready(url: str, timeout: float = 90.0) -> None:
    error = host.wait_http_ok(f"{url}/-/ready", timeout=timeout)
    if error is not None:
        raise LabError(
            f"Prometheus at {url} not ready after {timeout:.0f}s ({error}); "
            "see `docker -H unix:///run/swl/n1/docker.sock service ps prometheus --no-trunc`"
        )


def down() -> None:
    """Remove everything the lab made except the image cache. Safe to run at any time, twice."""
    counted = recorded_node_count() or 0
    indexes = {int(ns.removeprefix(f"{layout.PREFIX}node")) for ns in host.lab_netns()}
    indexes |= set(range(1, counted + 1))
    if layout.RUN_DIR.exists():
        indexes |= {int(p.name[1:]) for p in layout.RUN_DIR.glob("n[0-9]*")}
    nodes = [layout.Node(i) for i in sorted(indexes)]
    network_ids = swarm.swarm_network_ids(nodes)
    for node in nodes:
        daemons.kill_everything(node)
    host.remove_lb_files(network_ids)
    host.unmount_all_under([layout.STATE_DIR, layout.RUN_DIR])
    for node in nodes:
        host.remove_cgroups(node.name)
        host.remove_node_network(node)
    host.remove_bridge()
    for directory in (layout.STATE_DIR, layout.RUN_DIR):
        shutil.rmtree(directory, ignore_errors=True)
        if directory.exists():
            raise LabError(f"could not remove {directory}: check `lsof +D {directory}`")


def is_up() -> bool:
    count = recorded_node_count()
    if count is None:
        return False
    return swarm.ready_count() >= count


def status() -> dict[str, Any]:
    count = recorded_node_count()
    if count is None:
        return {"up": False}
    report: dict[str, Any] = {"up": True, **asdict(_info(count))}
    report["dockerd"] = {
        n.name: {"pid": daemons.dockerd_pid(n), "link_up": host.host_link_up(n)} for n in layout.nodes(count)
    }
    try:
        report["swarm_nodes"] = swarm.node_states()
        report["services"] = swarm.services_summary()
    except Exception as exc:  # status must report a broken lab, not crash on it
        report["error"] = f"manager not answering: {exc}"
    all_pids = [p for n in layout.nodes(count) for p in daemons.node_pids(n)]
    report["memory_rss_mib"] = round(host.rss_kib(all_pids) / 1024, 1)
    return report


def _node(n: int) -> layout.Node:
    count = recorded_node_count()
    if count is None:
        raise LabError("the lab is not up: run `swarm-autoscaler lab up`")
    if not 1 <= n <= count:
        raise LabError(f"node {n} does not exist: the lab has nodes 1..{count}")
    return layout.Node(n)


def node_down(n: int, mode: NodeDownMode = "link") -> None:
    """Fail node ``n``.

    ``link`` sets its veth down, ``kill`` SIGKILLs dockerd and containerd (containers keep
    running, orphaned), ``stop`` SIGTERMs dockerd (it stops its containers). ``node_up`` repairs.
    """
    node = _node(n)
    if mode == "link":
        host.set_host_link(node, up=False)
    elif mode == "kill":
        daemons.stop(node, signal.SIGKILL, with_containerd=True)
    elif mode == "stop":
        daemons.stop(node, signal.SIGTERM, with_containerd=False)
    else:
        raise LabError(f"unknown node_down mode {mode!r}: use link, kill or stop")


def node_up(n: int) -> None:
    """Repair node ``n`` whatever broke it: link up, dockerd running and answering."""
    node = _node(n)
    host.set_host_link(node, up=True)
    daemons.start(node)


# Held while a node's dockerd is paused: one pause at a time across every session sharing
# the lab, so two tests never stack their outages on the manager.
PAUSE_LOCK = layout.CACHE_DIR / "daemon-pause.lock"


@contextlib.contextmanager
def daemon_paused(n: int) -> Iterator[int]:
    """Node ``n``'s dockerd SIGSTOPped for the ``with`` block: a hung daemon (the kernel still
    accepts connections, nothing answers). Resumed on leaving the block whatever happened;
    yields the pid. Keep the block short: every session using the lab waits with it."""
    node = _node(n)
    pid = daemons.dockerd_pid(node)
    if pid is None:
        raise LabError(f"dockerd of {node.name} is not running: nothing to pause")
    layout.CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with PAUSE_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            _log(f"pausing dockerd of {node.name} (pid {pid})")
            os.kill(pid, signal.SIGSTOP)
            try:
                yield pid
            finally:
                os.kill(pid, signal.SIGCONT)
                _log(f"resumed dockerd of {node.name} (pid {pid})")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
