"""The cross-node half of the walk-through, on the two-node VM lab.

A request to node 2's published port is served by a task that runs only on node 1: node 2's
``ingress_sbox`` marks it (mangle PREROUTING), IPVS there picks the task on node 1 as the
backend, and the packet crosses the ingress overlay (VXLAN between the guests) to it. The
readings are the guest's own tools (nsenter, ipvsadm, iptables-save), not the agent's code.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import docker
import pytest
from docker.types import EndpointSpec
from timing import wait_until
from vm_helpers import (
    HTTPD,
    TCG_DEADLINE,
    guest,
    http_get,
    manager,
    need_nodes,
    parse_ipvsadm,
    task_address,
    task_hostname,
    unique,
    wait_running,
)

from swarm_lab.vm_lab import VmLabInfo
from swarm_lab.vm_layout import VmNode

SERVING, ASKED = VmNode(1), VmNode(2)
INGRESS = "/var/run/docker/netns/ingress_sbox"
REQUESTS = 6
pytestmark = pytest.mark.timeout(600)  # TCG: a task start and the overlay's setup take minutes when busy


@dataclass(frozen=True)
class OnNodeOne:
    name: str
    port: int
    task: dict[str, Any]


@pytest.fixture(scope="module")
def on_node_one(vm_lab: VmLabInfo) -> Iterator[OnNodeOne]:
    need_nodes(vm_lab, 2)
    name = unique("vmt-x")
    port = random.randint(33000, 34999)  # several sessions may share the VM lab
    with manager(vm_lab) as client:
        client.services.create(
            f"{vm_lab.images['busybox']}:latest",
            ["sh", "-c", HTTPD],
            name=name,
            init=True,
            constraints=[f"node.hostname=={SERVING.hostname}"],
            mode=docker.types.ServiceMode("replicated", replicas=1),
            endpoint_spec=EndpointSpec(ports={port: 3000}),
        )
        try:
            [task] = wait_running(client, name, 1)
            yield OnNodeOne(name, port, task)
        finally:
            client.services.get(name).remove()


def _answer(node: VmNode, port: int) -> str | None:
    try:
        return http_get(node.ip, port, timeout=10)
    except OSError:
        return None


def _ingress_backends(node: VmNode, port: int) -> set[str] | None:
    """The addresses IPVS in ``node``'s ingress_sbox balances ``port`` to (None: no rule yet)."""
    mangle = guest(node, "nsenter", f"--net={INGRESS}", "iptables-save", "-t", "mangle")
    marks = [
        line.split("--set-xmark ")[1].split("/")[0]
        for line in mangle.splitlines()
        if f"--dport {port} " in line and "--set-xmark" in line
    ]
    if not marks:
        return None
    table = parse_ipvsadm(guest(node, "nsenter", f"--net={INGRESS}", "ipvsadm", "-Ln", "--exact"))
    servers = table.get(f"FWM {int(marks[0], 16)}")
    return None if servers is None else {server[0] for server in servers}


def test_node_two_serves_its_published_port_with_the_task_on_node_one(
    vm_lab: VmLabInfo, on_node_one: OnNodeOne
) -> None:
    with manager(vm_lab) as client:
        node_of_task = client.nodes.get(str(on_node_one.task["NodeID"])).attrs["Description"]["Hostname"]
    assert node_of_task == SERVING.hostname  # the constraint held: nothing runs on node 2
    expected = task_hostname(on_node_one.task)
    first = wait_until(
        lambda: _answer(ASKED, on_node_one.port),
        deadline=TCG_DEADLINE,
        every=1.0,
        what=f"node 2 ({ASKED.ip}) answering on :{on_node_one.port}",
    )
    answers = [first] + [http_get(ASKED.ip, on_node_one.port) for _ in range(REQUESTS - 1)]
    assert answers == [expected] * REQUESTS  # every request, asked of node 2, served on node 1

    address = task_address(on_node_one.task, "ingress")
    backends = wait_until(
        lambda: _ingress_backends(ASKED, on_node_one.port),
        deadline=TCG_DEADLINE,
        every=1.0,
        what=f"node 2's ingress_sbox marking :{on_node_one.port} into an IPVS service",
    )
    assert backends == {address}  # node 2's IPVS balances to the task on node 1, and only to it
    assert _ingress_backends(SERVING, on_node_one.port) == {address}  # the same table on node 1
