"""Swarm's routing mesh on a real kernel (the VM lab): published ports, IPVS, the agent's readings.

The walk-through the product starts from: a request to a published port on the node is
marked in ingress_sbox's mangle PREROUTING and balanced by IPVS round robin over the tasks.
Then the agent's two readers (netlink, /proc) against ipvsadm and the kernel's own file at
the same moment, and its fwmark -> service mapping against Docker's records through a port
change, a scale and a removal. TCG is slow: one service serves the whole module.
"""

from __future__ import annotations

import contextlib
import random
import re
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
    agent_samples,
    held_connections,
    http_get,
    manager,
    parse_ipvsadm,
    parse_ipvsadm_stats,
    probe,
    task_address,
    task_hostname,
    unique,
    wait_running,
)

from swarm_lab.vm_lab import VmLabInfo
from swarm_lab.vm_layout import VmNode

NODE = VmNode(1)
pytestmark = pytest.mark.timeout(600)  # TCG: a rolling update alone can take minutes on a busy host
_MARK_RULE = re.compile(r"^-A PREROUTING .*--dport (\d+) .*-j MARK --set-x?mark (0x[0-9a-fA-F]+)")


@dataclass
class Published:
    name: str
    port: int
    client: docker.DockerClient


@pytest.fixture(scope="module")
def web(vm_lab: VmLabInfo) -> Iterator[Published]:
    name = unique("vmt-web")
    port = random.randint(20000, 29999)  # several sessions may share the VM lab
    with manager(vm_lab) as client:
        client.services.create(
            f"{vm_lab.images['busybox']}:latest",
            ["sh", "-c", HTTPD],
            name=name,
            mode=docker.types.ServiceMode("replicated", replicas=2),
            endpoint_spec=EndpointSpec(ports={port: 3000}),
            init=True,  # busybox httpd as PID 1 ignores SIGTERM: removal would wait 10 s per task
            # A port change replaces the tasks: all at once, task starts take long under TCG.
            update_config=docker.types.UpdateConfig(parallelism=0),
        )
        try:
            wait_running(client, name, 2)
            wait_until(
                lambda: _answers(port), deadline=TCG_DEADLINE, every=1.0, what=f"{name} answering on :{port}"
            )
            yield Published(name, port, client)
        finally:
            with contextlib.suppress(docker.errors.NotFound):  # the last test removes it
                client.services.get(name).remove()


def _answers(port: int) -> bool:
    try:
        return bool(http_get(NODE.ip, port, timeout=10))
    except OSError:
        return False


def _marks(mangle: str) -> dict[int, int]:
    """published port -> fwmark, from ingress_sbox's mangle PREROUTING rules."""
    found = (_MARK_RULE.match(line) for line in mangle.splitlines())
    return {int(m.group(1)): int(m.group(2), 16) for m in found if m}


def test_published_port_is_balanced_round_robin_over_the_tasks(web: Published) -> None:
    tasks = wait_running(web.client, web.name, 2)
    answers = [http_get(NODE.ip, web.port) for _ in range(3 * len(tasks))]
    assert set(answers) == {task_hostname(t) for t in tasks}
    # Round robin: every task once per round, in the same order each round.
    k = len(tasks)
    assert len(set(answers[:k])) == k
    assert answers == [answers[i % k] for i in range(len(answers))]

    seen = probe(NODE, "ingress_sbox")
    mark = _marks(seen["mangle"])[web.port]
    table = parse_ipvsadm(seen["ipvsadm"])
    assert {server[0] for server in table[f"FWM {mark}"]} == {task_address(t, "ingress") for t in tasks}


def _fwmark(web: Published) -> int:
    record = web.client.api.inspect_network("ingress", verbose=True, scope="swarm")
    return int(record["Services"][web.name]["LocalLBIndex"])


def _agreeing_probe(fwmark: int, attempts: int = 3) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(netlink, procfs, ipvsadm) for ``fwmark`` at one moment. A TIME_WAIT entry expiring
    between two reads of one probe makes InActConn move: such a probe is taken again."""
    for _ in range(attempts):
        seen = probe(NODE, "ingress_sbox")
        netlink = next(s for s in seen["netlink"] if s["fwmark"] == fwmark)
        procfs = next(s for s in seen["procfs"] if s["fwmark"] == fwmark)
        admin = {
            "servers": parse_ipvsadm(seen["ipvsadm"])[f"FWM {fwmark}"],
            "conns": parse_ipvsadm_stats(seen["ipvsadm_stats"])[f"FWM {fwmark}"],
        }
        if netlink["servers"] == procfs["servers"] == admin["servers"]:
            break
    return netlink, procfs, admin


def test_agent_readers_equal_ipvsadm_and_proc_at_the_same_moment(web: Published) -> None:
    fwmark = _fwmark(web)
    held = 4
    with held_connections(NODE.ip, web.port, held):
        netlink, procfs, admin = _agreeing_probe(fwmark)
    assert netlink["servers"] == admin["servers"]
    assert procfs["servers"] == admin["servers"]
    assert sum(server[4] for server in admin["servers"]) == held  # ActiveConn: the held ones
    assert netlink["connections_total"] == admin["conns"]
    assert procfs["connections_total"] is None  # /proc/net/ip_vs has no cumulative count
    assert netlink["scheduler"] == procfs["scheduler"] == "rr"


def _agent_services(fwmark: int) -> dict[str, Any]:
    samples = agent_samples(NODE)
    mine = [(n, lab, v) for n, lab, v in samples if lab.get("fwmark") == str(fwmark)]
    return {
        "service": {lab["service"] for n, lab, _ in mine if n == "swarm_ipvs_backends"},
        "backends": {lab["task"] for n, lab, _ in mine if n == "swarm_ipvs_backend_weight"},
        "count": sum(v for n, _, v in mine if n == "swarm_ipvs_backends"),
    }


def _mapped(web: Published, replicas: int) -> dict[str, Any] | None:
    """The agent's view of the service's fwmark when it names the service and exactly its
    running tasks (``replicas`` of them), else None."""
    fwmark = _fwmark(web)
    tasks = web.client.services.get(web.name).tasks(filters={"desired-state": "running"})
    running = {f"{web.name}.{t['Slot']}.{t['ID']}" for t in tasks if t["Status"]["State"] == "running"}
    seen = _agent_services(fwmark)
    ok = seen["service"] == {web.name} and seen["backends"] == running and len(running) == replicas
    return seen if ok else None


def test_fwmark_maps_to_the_service_and_its_tasks_as_docker_records(web: Published) -> None:
    wait_until(
        lambda: _mapped(web, 2),
        deadline=TCG_DEADLINE,
        every=1.0,
        what="the agent naming the service and its 2 tasks",
    )


def test_mapping_after_a_new_published_port(web: Published) -> None:
    new_port = web.port + 1
    web.client.services.get(web.name).update(endpoint_spec=EndpointSpec(ports={new_port: 3000}))
    wait_until(
        lambda: _answers(new_port),
        deadline=TCG_DEADLINE,
        every=1.0,
        what=f"{web.name} answering on :{new_port}",
    )
    web.port = new_port
    wait_running(web.client, web.name, 2)
    wait_until(
        lambda: _marks(probe(NODE, "ingress_sbox")["mangle"]).get(new_port) == _fwmark(web),
        deadline=TCG_DEADLINE,
        every=1.0,
        what=f"ingress_sbox marking :{new_port} with the service's LocalLBIndex",
    )
    wait_until(
        lambda: _mapped(web, 2), deadline=TCG_DEADLINE, every=1.0, what="the mapping after the port change"
    )


def test_mapping_after_a_scale(web: Published) -> None:
    web.client.services.get(web.name).scale(3)
    wait_running(web.client, web.name, 3)
    wait_until(
        lambda: _mapped(web, 3), deadline=TCG_DEADLINE, every=1.0, what="the agent listing the third task"
    )


def test_mapping_after_the_removal(web: Published) -> None:
    fwmark = _fwmark(web)
    web.client.services.get(web.name).remove()
    wait_until(
        lambda: not (seen := _agent_services(fwmark))["service"] and seen["count"] == 0,
        deadline=TCG_DEADLINE,
        every=1.0,
        what=f"fwmark {fwmark} gone from the agent after the removal",
    )
