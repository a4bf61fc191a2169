"""The VM lab (``lab up --backend vm``): Swarm nodes with a real kernel, so the routing mesh runs.

Each node is a QEMU guest (vm_qemu) on the ``swvbr0`` bridge; its dockerd listens on the lab
bridge only (tcp://10.79.0.1N:2375), the project's IPVS agent runs in it from the shared
checkout (vm_init), and Prometheus runs on the host (10.79.0.1:9090) scraping the agents and
the engines. Up is idempotent; down removes every process, tap, bridge and iptables rule
(the image cache stays).

This module is the lab's lifecycle (up, down, is_up, status) and its public face: what it
records is in vm_state, its nodes as Swarm nodes (wait, fail, repair) in vm_nodes, the load
generator's control in vm_traffic.
"""

from __future__ import annotations

import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from swarm_lab import host, swarm, vm_image, vm_layout, vm_nodes, vm_prometheus, vm_qemu, vm_state
from swarm_lab.daemons import client
from swarm_lab.errors import LabError
from swarm_lab.vm_layout import VmNode
from swarm_lab.vm_nodes import VmNodeDownMode, exec_on, node_down, node_up
from swarm_lab.vm_state import BUSYBOX, NETWORK, VmLabInfo, guest_source, info, recorded_node_count
from swarm_lab.vm_traffic import published_port, set_load, stop_loads

__all__ = [
    "BUSYBOX",
    "NETWORK",
    "VmLabInfo",
    "VmNodeDownMode",
    "client",
    "down",
    "exec_on",
    "guest_source",
    "info",
    "is_up",
    "node_down",
    "node_up",
    "published_port",
    "recorded_node_count",
    "set_load",
    "status",
    "stop_loads",
    "up",
]


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
    source = guest_source()  # a lab repaired from another checkout keeps reading the first one
    vm_state.write(node_count, accel, source)
    host.ensure_bridge(vm_layout.BRIDGE, vm_layout.BRIDGE_IP, vm_layout.SUBNET, vm_layout.IPTABLES_COMMENT)
    for node in nodes:
        vm_qemu.ensure_tap(node)
        vm_qemu.start(node, image, accel, source)
    for node in nodes:
        vm_nodes.wait_docker(node)
    vm_nodes.log(f"{node_count} VM node(s) ({accel}) answering in {time.monotonic() - started:.0f}s")
    swarm.ensure_swarm(nodes, vm_nodes.VM_SWARM)
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        list(pool.map(vm_nodes.ensure_busybox, nodes))
    vm_prometheus.ensure_running(nodes)
    for node in nodes:
        vm_nodes.wait_agent(node)
    lab = vm_state.info_for(node_count, accel)
    vm_nodes.log(f"VM lab up in {time.monotonic() - started:.0f}s; Prometheus at {lab.prometheus_url}")
    return lab


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
    return count is not None and swarm.ready_count(vm_layout.MANAGER) >= count


def status() -> dict[str, Any]:
    state = vm_state.read()
    if state is None:
        return {"up": False}
    count = int(state["nodes"])
    lab = vm_state.info_for(count, str(state.get("accel")))
    report: dict[str, Any] = {"up": True, "backend": "vm", **asdict(lab)}
    report["guest_source"] = guest_source().checkout
    report["vms"] = {
        n.hostname: {"qemu_pid": vm_qemu.qemu_pid(n), "link_up": vm_qemu.link_up(n)}
        for n in vm_layout.nodes(count)
    }
    pids = [p for p in (vm_qemu.qemu_pid(n) for n in vm_layout.nodes(count)) if p is not None]
    report["memory_rss_mib"] = round(host.rss_kib(pids) / 1024, 1)
    try:
        report["swarm_nodes"] = swarm.node_states(vm_layout.MANAGER)
        report["services"] = swarm.services_summary(vm_layout.MANAGER)
    except Exception as exc:  # status must report a broken lab, not crash on it
        report["error"] = f"manager not answering: {exc}"
    return report
