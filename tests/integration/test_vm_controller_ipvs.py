"""The controller on the host scales a VM lab service on its IPVS connection count, up and down.

A service published through the routing mesh, a policy on ``ipvs: {counter:
activeConnections}``, the controller reading the node's agent (``--ipvs-agent``). The lab's
load generator holds connections open through the published port (reopening those the
server closes): 12 held against 5 per replica asks for 3 replicas; none held brings it back
to 1 after the scale-down window.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from controller_helpers import ControllerProcess
from timing import wait_until
from vm_helpers import TCG_DEADLINE, create_web, manager, unique, wait_running

from swarm_lab import vm_lab as vm_lab_api
from swarm_lab.vm_lab import VmLabInfo
from swarm_lab.vm_layout import VmNode

pytestmark = pytest.mark.timeout(900)  # TCG: three task starts and a scale-down window
HELD = 12
PER_REPLICA = 5


def _policy(service: str) -> str:
    return (
        "apiVersion: autoscaler.swarm/v1\n"
        "kind: ScalingPolicy\n"
        f"metadata:\n  name: vm-{service}\n"
        "spec:\n"
        f"  service: {service}\n"
        "  minReplicas: 1\n"
        "  maxReplicas: 3\n"
        "  metrics:\n"
        "    - name: open_connections\n"
        "      ipvs:\n        counter: activeConnections\n"
        f"      target:\n        averageValue: {PER_REPLICA}\n"
        "  behavior:\n"
        "    scaleDown:\n      stabilizationWindowSeconds: 10\n"
        "  panic:\n    enabled: false\n"
    )


@pytest.fixture
def service(vm_lab: VmLabInfo) -> Iterator[tuple[docker.DockerClient, str]]:
    name = unique("vmt-conn")
    with manager(vm_lab) as client:
        create_web(client, vm_lab, name, 1, random.randint(30000, 32000))
        try:
            wait_running(client, name, 1)
            yield client, name
        finally:
            vm_lab_api.set_load(name, connections=0)
            client.services.get(name).remove()


def _spec_replicas(client: docker.DockerClient, name: str) -> int:
    return int(client.services.get(name).attrs["Spec"]["Mode"]["Replicated"]["Replicas"])


def test_controller_scales_on_active_connections_up_and_back_down(
    vm_lab: VmLabInfo, service: tuple[docker.DockerClient, str], tmp_path: Path
) -> None:
    client, name = service
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / f"{name}.yaml").write_text(_policy(name))
    controller = ControllerProcess(
        policies=policies,
        docker_host=vm_lab.manager_url,
        prometheus_url=vm_lab.prometheus_url,
        workdir=tmp_path,
        interval=2.0,
        extra=["--ipvs-agent", VmNode(1).agent_url],
    )
    try:
        vm_lab_api.set_load(name, connections=HELD, duration_s=600)
        wait_until(
            lambda: _spec_replicas(client, name) == 3,
            deadline=TCG_DEADLINE,
            every=1.0,
            what=f"{name} scaled to 3",
        )
        wait_running(client, name, 3)
        scaled = [e for e in controller.events("action", name) if e.get("action") == "scaled"]
        assert scaled and all(int(e["to"]) > int(e["from"]) for e in scaled)
        reasons = [str(e) for e in controller.events("decision", name)]
        assert any("open_connections" in r and "-> 3" in r for r in reasons)  # scaled on the IPVS count
        vm_lab_api.set_load(name, connections=0)
        wait_until(
            lambda: _spec_replicas(client, name) == 1,
            deadline=TCG_DEADLINE,
            every=1.0,
            what=f"{name} back to 1",
        )
        # The spec can show 1 a moment before the controller's log line does: wait for the line.
        controller.wait_action(name, since=0.0, deadline=60, to=lambda old, new: new == 1 < old, what="to 1")
    finally:
        controller.stop()
