"""What the VM lab records about itself (``/run/swv/lab.json``) and what callers learn from it.

The node count, the accelerator and the checkout the guests read the project's code from are
written by ``up``; everything else (``info``, ``node``, ``guest_source``) is derived from them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from swarm_lab import images, vm_layout
from swarm_lab.errors import LabError
from swarm_lab.vm_layout import VmNode
from swarm_lab.vm_qemu import GuestSource

NETWORK = "lab-net"
BUSYBOX = images.BUSYBOX
NOT_UP = "the VM lab is not up: run `swarm-autoscaler lab up --backend vm`"


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


def read() -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(vm_layout.STATE_FILE.read_text())
        return state
    except (FileNotFoundError, ValueError):
        return None


def write(node_count: int, accel: str, source: GuestSource) -> None:
    state = {"nodes": node_count, "accel": accel, "src": source.checkout, "pythonpath": source.pythonpath}
    vm_layout.STATE_FILE.write_text(json.dumps(state))


def recorded_node_count() -> int | None:
    state = read()
    return int(state["nodes"]) if state else None


def info_for(count: int, accel: str) -> VmLabInfo:
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
    state = read()
    if state is None:
        raise LabError(NOT_UP)
    return info_for(int(state["nodes"]), str(state.get("accel", "tcg")))


def node(n: int) -> VmNode:
    """Node ``n`` of the running lab (LabError naming the valid numbers otherwise)."""
    count = recorded_node_count()
    if count is None:
        raise LabError(NOT_UP)
    if not 1 <= n <= count:
        raise LabError(f"node {n} does not exist: the VM lab has nodes 1..{count}")
    return VmNode(n)


def guest_source() -> GuestSource:
    """The checkout the lab's guests read the project's code from: the one that started it
    (recorded; for a lab started before that was recorded, the manager's QEMU command line),
    else this process's own. A node booted again, or a probe run in a guest, uses the same
    one, whichever checkout runs the command."""
    state = read() or {}
    if "src" in state and "pythonpath" in state:
        return GuestSource(str(state["src"]), str(state["pythonpath"]))
    return GuestSource.of_running(vm_layout.MANAGER) or GuestSource.here()
