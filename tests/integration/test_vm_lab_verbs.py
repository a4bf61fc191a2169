"""``swarm-autoscaler lab ... --backend vm`` as a person runs it: status, env, exec, and a worker
failed and repaired with ``node-down``/``node-up`` (``link``: its tap down, ``stop``: its
dockerd SIGTERMed; ``kill`` is test_vm_failover.py's). Node 2 only, and back up before the
test returns: other sessions share the lab.
"""

from __future__ import annotations

import pytest
from timing import wait_until
from vm_helpers import TCG_DEADLINE, lab_cli, manager, need_nodes, remove_network, unique, wait_running

from swarm_lab import daemons, swarm
from swarm_lab.vm_lab import VmLabInfo
from swarm_lab.vm_layout import MANAGER, VmNode

VICTIM = VmNode(2)
pytestmark = pytest.mark.timeout(900)  # TCG: a missed heartbeat, a dockerd start


def _state_of_victim() -> str:
    return next(s["state"] for s in swarm.node_states(MANAGER) if s["hostname"] == VICTIM.hostname)


def test_status_env_and_exec_describe_the_running_lab(vm_lab: VmLabInfo) -> None:
    need_nodes(vm_lab, 2)
    env = lab_cli("env", "--backend", "vm")
    assert env.returncode == 0, env.stderr
    assert f"export DOCKER_HOST={vm_lab.manager_url}\n" in env.stdout
    assert f"export LAB_NODE_ADDRS='{' '.join(vm_lab.node_ips)}'\n" in env.stdout
    status = lab_cli("status", "--backend", "vm")
    assert status.returncode == 0, status.stderr
    for node in (MANAGER, VICTIM):
        assert f"node {node.hostname:<10}" in status.stdout
    done = lab_cli("exec", "2", "--", "hostname")
    assert (done.returncode, done.stdout.strip()) == (0, VICTIM.hostname)
    missing = lab_cli("exec", "9", "--", "true")
    assert missing.returncode == 1 and "node 9 does not exist" in missing.stderr


@pytest.mark.parametrize("mode", ["stop", "link"])
def test_node_down_then_node_up_brings_the_worker_back(vm_lab: VmLabInfo, mode: str) -> None:
    need_nodes(vm_lab, 2)
    down = lab_cli("node-down", "2", "--mode", mode, "--backend", "vm")
    try:
        assert down.returncode == 0, down.stderr
        if mode == "stop":
            assert not daemons.answers(VICTIM)  # node-down returns once dockerd stopped answering
        else:  # the tap is down: the manager stops hearing the node's heartbeat
            wait_until(
                lambda: _state_of_victim() == "down",
                deadline=TCG_DEADLINE,
                every=2.0,
                what="the manager seeing node 2 down",
            )
    finally:
        up = lab_cli("node-up", "2", "--backend", "vm")
    assert up.returncode == 0, up.stderr
    assert daemons.answers(VICTIM)
    assert _state_of_victim() == "ready"  # node-up returns once every node is ready
    if mode == "stop":
        _runs_a_task_on_an_overlay(vm_lab)


def _runs_a_task_on_an_overlay(vm_lab: VmLabInfo) -> None:
    """The restarted engine starts a task on an overlay network, which needs docker_gwbridge:
    before node-up cleared its local network store, every such task failed there ("networks
    have same bridge name")."""
    name = unique("vmt-after-stop")
    with manager(vm_lab) as client:
        net = client.networks.create(name, driver="overlay", scope="swarm")
        service = client.services.create(
            f"{vm_lab.images['busybox']}:latest",
            ["sleep", "3600"],
            name=name,
            networks=[name],
            init=True,
            constraints=[f"node.hostname=={VICTIM.hostname}"],
        )
        try:
            wait_running(client, name, 1)
        finally:
            service.remove()
            remove_network(net)
