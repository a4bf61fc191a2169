"""A node failure on the two-node VM lab: the replacement counts as confirmed only once IPVS routes to it.

A service with 2 replicas published through the routing mesh, one task per node; the
failover monitor reads the nodes' IPVS agents (``nodeFailure.loadBalancer: required``).
Node 2 is powered off through ``swarm-autoscaler lab node-down 2 --mode kill --backend vm``,
the monitor is resynced until the lost task's replacement is confirmed, and at that moment
node 1's ingress_sbox (read with ipvsadm, not the agent) routes to the replacement and no
longer to the lost task. Then ``lab node-up 2 --backend vm`` boots node 2 again as a new,
empty engine, and the lab must be whole: node 2 in the swarm once and ready, busybox
loaded, its agent answering. The pending reasons seen over time are printed (``-s``): the
running-to-routed gap.
"""

from __future__ import annotations

import random
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import docker
import pytest
from prometheus_client import CollectorRegistry
from timing import eventually, wait_until
from vm_helpers import (
    TCG_DEADLINE,
    create_web,
    ingress_backends,
    lab_cli,
    manager,
    need_nodes,
    task_address,
    unique,
    wait_running,
)

from autoscaler.core.policy import PolicySpec
from autoscaler.reconciler.failover_monitor import FailoverMonitor
from autoscaler.sources.ipvs_agents import IpvsSource
from autoscaler.targets.swarm import SwarmTarget
from autoscaler.targets.swarm_nodes import SwarmNodes
from swarm_lab import LabError
from swarm_lab import vm_lab as vm_lab_api
from swarm_lab.vm_lab import VmLabInfo
from swarm_lab.vm_layout import VmNode

SURVIVOR, VICTIM = VmNode(1), VmNode(2)
pytestmark = pytest.mark.timeout(1200)  # TCG: a node's detection, a task start, a guest's boot


@dataclass(frozen=True)
class Published:
    name: str
    port: int
    lost: dict[str, Any]  # the task on node 2


def run_lab(*args: str) -> None:
    """``swarm-autoscaler lab ARGS --backend vm``, as a person runs it; it must succeed."""
    started = time.monotonic()
    done = lab_cli(*args, "--backend", "vm")
    assert done.returncode == 0, f"`lab {' '.join(args)} --backend vm` failed: {done.stdout}{done.stderr}"
    print(f"\n`lab {' '.join(args)} --backend vm`: {time.monotonic() - started:.0f} s {done.stdout.strip()}")


def _node_of(client: docker.DockerClient, task: dict[str, Any]) -> str:
    return str(client.nodes.get(task["NodeID"]).attrs["Description"]["Hostname"])


@pytest.fixture
def published(vm_lab: VmLabInfo) -> Iterator[Published]:
    need_nodes(vm_lab, 2)
    name = unique("vmt-fo")
    port = random.randint(35000, 36999)  # several sessions may share the VM lab
    with manager(vm_lab) as client:
        create_web(client, vm_lab, name, 2, port)
        try:
            tasks = wait_running(client, name, 2)
            on_victim = [t for t in tasks if _node_of(client, t) == VICTIM.hostname]
            assert len(on_victim) == 1, f"Swarm's spread put {len(on_victim)} of 2 tasks on node 2"
            yield Published(name, port, on_victim[0])
        finally:
            client.services.get(name).remove()


@pytest.fixture
async def monitor(vm_lab: VmLabInfo, published: Published) -> AsyncIterator[FailoverMonitor]:
    target, nodes = SwarmTarget(vm_lab.manager_url), SwarmNodes(vm_lab.manager_url)
    # A TCG guest's agent answers in 0.5-20 s on a busy host, and the powered-off node's read
    # waits for the whole timeout: 10 s keeps a resync every ~10 s (a slow read just waits a pass).
    agents = IpvsSource(agents=vm_lab.agent_urls, timeout=10.0)
    monitor = FailoverMonitor(
        nodes=nodes,
        target=target,
        registry=CollectorRegistry(),
        load_balancer=agents,
        load_balancer_timeout=15.0,
    )
    state = await target.get_service(published.name)
    assert state is not None and state.load_balanced
    spec = PolicySpec.model_validate(
        {
            "service": published.name,
            "maxReplicas": 4,
            "metrics": [{"name": "c", "ipvs": {"counter": "activeConnections"}, "target": {"value": 1}}],
            "nodeFailure": {"loadBalancer": "required", "confirmWithinSeconds": 900},
        }
    )
    monitor.set_managed([(state, spec)])
    try:
        yield monitor
    finally:
        await agents.close()
        await target.close()
        await nodes.close()


def _routed(node: VmNode, port: int) -> set[str]:
    return ingress_backends(node, port) or set()


def _routed_while_polling(node: VmNode, port: int) -> set[str]:
    """``_routed``, with a guest too busy to answer in time read as "nothing yet": a poll goes
    on. (An ``iptables-save`` in ingress_sbox took over 120 s while another session deployed
    a stack on the lab, seen.)"""
    try:
        return _routed(node, port)
    except LabError:
        return set()


def _lab_is_whole(client: docker.DockerClient) -> bool:
    entries = [n.attrs for n in client.nodes.list()]
    victims = [e for e in entries if e["Description"]["Hostname"] == VICTIM.hostname]
    if len(victims) != 1 or victims[0]["Status"]["State"] != "ready":
        return False
    with vm_lab_api.client(VICTIM) as on_victim:
        on_victim.images.get(vm_lab_api.BUSYBOX)  # ImageNotFound fails the test: not loaded again
    with urllib.request.urlopen(VICTIM.agent_url, timeout=60) as response:
        return bool(response.status == 200)


async def test_replacement_is_confirmed_only_once_ipvs_routes_to_it(
    vm_lab: VmLabInfo, published: Published, monitor: FailoverMonitor
) -> None:
    lost_address = task_address(published.lost, "ingress")
    wait_until(
        lambda: lost_address in _routed_while_polling(SURVIVOR, published.port),
        deadline=TCG_DEADLINE,
        every=1.0,
        what="node 1's ingress IPVS routing to the task on node 2",
    )
    assert await monitor.resync() == []  # nothing failed yet
    # (seconds since node-down, status, reason, whether node 1's kernel routes to the replacement)
    timeline: list[tuple[float, str, str, str]] = []
    started = time.monotonic()
    run_lab("node-down", "2", "--mode", "kill")
    try:

        async def confirmed() -> dict[str, Any] | None:
            await monitor.resync()
            failover = next((f for f in monitor.failovers() if f["node"] == VICTIM.hostname), None)
            if failover is None or not failover["tasks"]:
                return None
            [task] = failover["tasks"]
            seen = (task["status"], task["pending_reason"] or task["confirm_reason"] or "", _kernel(task))
            if not timeline or timeline[-1][1:] != seen:
                timeline.append((round(time.monotonic() - started, 1), *seen))
            return task if task["status"] == "confirmed" else None

        def _kernel(task: dict[str, Any]) -> str:
            """Whether ipvsadm on node 1 lists the replacement now (the kernel's own answer)."""
            if task["replacement"] is None:
                return "-"
            with manager(vm_lab) as client:
                found = client.api.tasks(filters={"id": task["replacement"]})
            if not found or not found[0].get("NetworksAttachments"):
                return "no address yet"
            routed = task_address(found[0], "ingress") in _routed_while_polling(SURVIVOR, published.port)
            return "kernel routes it" if routed else "kernel does not route it"

        task = await eventually(
            confirmed, deadline=2 * TCG_DEADLINE, every=1.0, what="the replacement confirmed"
        )
        routed = _routed(SURVIVOR, published.port)  # right then, as the kernel has it
        print(f"\nfailover of {VICTIM.hostname}, seconds since node-down:")
        for at, status, reason, kernel in timeline:
            print(f"  {at:6.1f}  {status:<10} [{kernel}] {reason}")
        print(f"  Swarm: running {task['running_after']} s, we confirmed {task['confirmed_after']} s")
        print(f"  after the node's failure time; node 1's ingress IPVS: {sorted(routed)}")

        assert task["confirm_reason"] == "confirmed: running, healthy, and an IPVS backend on 1/1 nodes"
        with manager(vm_lab) as client:
            replacement = next(
                t for t in client.services.get(published.name).tasks() if t["ID"] == task["replacement"]
            )
            assert _node_of(client, replacement) == SURVIVOR.hostname
        assert task_address(replacement, "ingress") in routed
        assert lost_address not in routed
        assert task["running_after"] <= task["confirmed_after"]
    finally:
        run_lab("node-up", "2")
    with manager(vm_lab) as client:
        wait_until(
            lambda: _lab_is_whole(client),
            deadline=TCG_DEADLINE,
            every=2.0,
            what="node 2 back: in the swarm once, ready, busybox loaded, its agent answering",
        )
