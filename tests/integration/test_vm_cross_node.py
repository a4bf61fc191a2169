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

import pytest
from timing import wait_until
from vm_helpers import (
    TCG_DEADLINE,
    create_web,
    http_get,
    ingress_backends,
    manager,
    need_nodes,
    task_address,
    task_hostname,
    unique,
    wait_running,
)

from swarm_lab.vm_lab import VmLabInfo
from swarm_lab.vm_layout import VmNode

SERVING, ASKED = VmNode(1), VmNode(2)
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
        create_web(client, vm_lab, name, 1, port, constraints=[f"node.hostname=={SERVING.hostname}"])
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
        lambda: ingress_backends(ASKED, on_node_one.port),
        deadline=TCG_DEADLINE,
        every=1.0,
        what=f"node 2's ingress_sbox marking :{on_node_one.port} into an IPVS service",
    )
    assert backends == {address}  # node 2's IPVS balances to the task on node 1, and only to it
    assert ingress_backends(SERVING, on_node_one.port) == {address}  # the same table on node 1
