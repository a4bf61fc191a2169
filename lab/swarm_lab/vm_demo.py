"""``lab demo --backend vm``: the routing mesh walk-through on the VM lab, then a scale on connections.

A busybox web service (``vmdemo``, 2 replicas, each answering with its container's name) is
published through the routing mesh. The demo sends requests to every node's published port
and prints which task answered each (IPVS round robin, across nodes through the ingress
overlay), prints node 1's ``ingress_sbox`` IPVS table with its counters (``ipvsadm -Ln
--stats``) and what the node's IPVS agent makes of it, then runs the controller on a policy
on ``activeConnections``: connections held open through the published port scale the
service up, and closing them brings it back down. Nothing is simulated.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import docker
from docker.types import EndpointSpec, ServiceMode

from swarm_lab import daemons, images, vm_lab, vm_nodes
from swarm_lab.demo import Controller, Snapshot
from swarm_lab.errors import LabError
from swarm_lab.vm_layout import MANAGER, VmNode

SERVICE = "vmdemo"
POLICY = images.ASSETS / "demo-vm-policy.yaml"
# Each task answers with its container's hostname, so a response names the task that served it.
HTTPD = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 3000 -h /www"
INGRESS = "/var/run/docker/netns/ingress_sbox"


@dataclass(frozen=True, slots=True)
class VmDemoPlan:
    port: int = 5080  # the published port, on every node
    requests: int = 6  # per node, for the round robin
    connections: int = 12  # held open for the scale-up: 12 / 5 per replica -> 3 replicas
    interval: float = 2.0  # controller interval, s
    phase_timeout: float = 420.0  # TCG: task starts take tens of seconds on a busy host


def _wait(what: str, condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise LabError(f"demo: {what} not after {timeout:.0f}s")
        time.sleep(1.0)


def _running(client: docker.DockerClient) -> list[dict[str, Any]]:
    tasks = client.services.get(SERVICE).tasks(filters={"desired-state": "running"})
    return [t for t in tasks if t["Status"]["State"] == "running"]


def _answer(node: VmNode, port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://{node.ip}:{port}/", timeout=10) as response:
            return str(response.read().decode().strip())
    except OSError:
        return None


def _answers(node: VmNode, port: int) -> bool:
    return _answer(node, port) is not None


def _create_service(client: docker.DockerClient, plan: VmDemoPlan, say: Callable[[str], None]) -> None:
    for old in client.services.list(filters={"name": SERVICE}):
        if old.name == SERVICE:
            say(f"   (removing {SERVICE} left by an earlier demo)")
            old.remove()
    client.services.create(
        f"{vm_lab.BUSYBOX}:latest",
        ["sh", "-c", HTTPD],
        name=SERVICE,
        init=True,  # busybox httpd as PID 1 ignores SIGTERM: a scale-down would wait 10 s per task
        mode=ServiceMode("replicated", replicas=2),
        endpoint_spec=EndpointSpec(ports={plan.port: 3000}),
    )


def _round_robin(info: vm_lab.VmLabInfo, plan: VmDemoPlan, say: Callable[[str], None]) -> bool:
    """Requests to every node's published port; True when each node's answers cycled over the tasks."""
    with daemons.client(MANAGER) as client:
        tasks = _running(client)
        hostnames = {n.id: n.attrs["Description"]["Hostname"] for n in client.nodes.list()}
        where = {t["Status"]["ContainerStatus"]["ContainerID"][:12]: hostnames[t["NodeID"]] for t in tasks}
    cycled = True
    for node in (VmNode(i) for i in range(1, info.nodes + 1)):
        _wait(f"{node.hostname} answering on :{plan.port}", partial(_answers, node, plan.port), 300)
        answers = [_answer(node, plan.port) for _ in range(plan.requests)]
        say(f"== {plan.requests} requests to {node.hostname} ({node.ip}:{plan.port}):")
        for i, answer in enumerate(answers, 1):
            say(f"   request {i}: served by task {answer} on {where.get(str(answer), '?')}")
        k = len(where)
        cycled &= set(answers) == set(where) and answers == [answers[j % k] for j in range(len(answers))]
    return cycled


def _ipvs(plan: VmDemoPlan, say: Callable[[str], None]) -> None:
    say("== node 1's ingress_sbox, as the kernel has it (lab exec 1 -- nsenter ... ipvsadm -Ln --stats):")
    table = vm_lab.exec_on(1, ["nsenter", f"--net={INGRESS}", "ipvsadm", "-Ln", "--stats"]).stdout
    for line in table.rstrip().splitlines():
        say("   " + line)
    say(f"== what node 1's IPVS agent serves for {SERVICE} ({MANAGER.agent_url}):")
    with urllib.request.urlopen(MANAGER.agent_url, timeout=60) as response:
        lines = response.read().decode().splitlines()
    for line in lines:
        if f'service="{SERVICE}"' in line and line.startswith(("swarm_ipvs_backends", "swarm_ipvs_conn")):
            say("   " + line)


def _watch_scale(
    ctl: Controller, held: int, wanted: int, timeout: float, say: Callable[[str], None], started: float
) -> bool:
    """Print the controller's view until ``wanted`` replicas run as the spec asks, or the timeout."""
    deadline = time.monotonic() + timeout
    shown: tuple[int | None, int | None] | None = None
    while time.monotonic() < deadline:
        snap = Snapshot.of(ctl.record())
        if (snap.running, snap.current) != shown:
            measured = "-" if snap.measured is None else f"{snap.measured:g}"
            say(
                f"t={time.monotonic() - started:5.0f}s held {held:3d}  IPVS activeConnections {measured:>4}  "
                f"running/spec {snap.running}/{snap.current}  {snap.reason[:90]}"
            )
            shown = (snap.running, snap.current)
        if snap.current == snap.running == wanted:
            return True
        time.sleep(1.0)  # display pace; the condition itself is polled
    say(f"(not at {wanted} replicas after {timeout:.0f} s; continuing)")
    return False


def run_vm_demo(plan: VmDemoPlan, info: vm_lab.VmLabInfo, say: Callable[[str], None] = print) -> bool:
    """Walk-through and scale on a VM lab that is up; True when every phase finished."""
    with daemons.client(MANAGER, timeout=120) as client:
        say(f"== service {SERVICE}: 2 busybox web tasks, published on :{plan.port} through the routing mesh")
        _create_service(client, plan, say)
        try:
            _wait(f"2 running tasks of {SERVICE}", lambda: len(_running(client)) == 2, plan.phase_timeout)
            ok = _round_robin(info, plan, say)
            _ipvs(plan, say)
            ok &= _scale_on_connections(info, plan, say)
        finally:
            vm_lab.set_load(SERVICE, connections=0)
            with contextlib.suppress(docker.errors.NotFound):
                client.services.get(SERVICE).remove()
    return ok


def _scale_on_connections(info: vm_lab.VmLabInfo, plan: VmDemoPlan, say: Callable[[str], None]) -> bool:
    workdir = Path(tempfile.mkdtemp(prefix="swarm-autoscaler-vm-demo-"))
    agents = [arg for url in info.agent_urls for arg in ("--ipvs-agent", url)]
    ctl = Controller(info.manager_url, info.prometheus_url, plan.interval, workdir, POLICY, SERVICE, agents)
    say(f"== controller: swarm-autoscaler run --policies {POLICY} {' '.join(agents)}")
    say(f"   HTTP {ctl.url} (try: swarm-autoscaler explain {SERVICE} --url {ctl.url}); log {ctl.log_path}")
    started = time.monotonic()
    try:
        say("== no connections held: the policy's minimum, 1 replica")
        ok = _watch_scale(ctl, 0, 1, plan.phase_timeout, say, started)
        say(f"== {plan.connections} connections held open through {MANAGER.ip}:{plan.port} (5 per replica)")
        vm_lab.set_load(SERVICE, connections=plan.connections, duration_s=plan.phase_timeout * 2)
        ok &= _watch_scale(ctl, plan.connections, 3, plan.phase_timeout, say, started)
        say("== connections closed: back to 1 after the 30 s scale-down window")
        vm_lab.set_load(SERVICE, connections=0)
        ok &= _watch_scale(ctl, 0, 1, plan.phase_timeout, say, started)
    finally:
        vm_lab.set_load(SERVICE, connections=0)
        ctl.stop()
    say("== scale actions the controller took (from its JSON log):")
    for line in ctl.actions():
        say("   " + line)
    return ok


def lab_for_demo(node_count: int) -> tuple[vm_lab.VmLabInfo, bool]:
    """The VM lab (brought up with ``node_count`` nodes unless it is up) and whether the demo started it."""
    if vm_lab.recorded_node_count() is not None and vm_lab.is_up():
        return vm_lab.info(), False
    vm_nodes.log(f"bringing the VM lab up with {node_count} node(s) (TCG: minutes)")
    return vm_lab.up(node_count), True
