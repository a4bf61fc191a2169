"""Helpers for the tests on the VM lab: services, held connections, in-guest probes, ipvsadm text."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from prometheus_client.parser import text_string_to_metric_families
from timing import wait_until

from swarm_lab import vm_exec, vm_lab
from swarm_lab.vm_lab import VmLabInfo
from swarm_lab.vm_layout import VmNode

PROBE = Path(__file__).relative_to(Path(__file__).parents[2]).with_name("vm_probe.py")
# A web server that answers with its container's hostname, so a response names its task.
HTTPD = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 3000 -h /www"
INGRESS = "/var/run/docker/netns/ingress_sbox"
# Container starts take seconds each under TCG; two guests on two shared cores (the two-node
# lab) put 2 tasks on a new overlay at 2-4 min when the host is busy (load ~9, seen).
TCG_DEADLINE = 420.0


def remove_network(net: docker.models.networks.Network) -> None:
    """``net`` removed, asked again while the tasks that use it stop (TCG: minutes)."""

    def removed() -> bool:
        try:
            net.remove()
        except docker.errors.NotFound:
            return True
        except docker.errors.APIError:  # still in use while the tasks stop
            return False
        return True

    wait_until(removed, deadline=TCG_DEADLINE, every=1.0, what=f"network {net.name} removed")


def need_nodes(info: VmLabInfo, count: int) -> None:
    """Fail (not skip) a test that needs ``count`` nodes on a VM lab that has fewer."""
    if info.nodes < count:
        pytest.fail(
            f"the VM lab is up with {info.nodes} node(s) and this test needs {count}: "
            "`swarm-autoscaler lab down --backend vm && "
            f"swarm-autoscaler lab up --backend vm --nodes {count}`",
            pytrace=False,
        )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@contextlib.contextmanager
def manager(info: VmLabInfo) -> Iterator[docker.DockerClient]:
    with vm_lab.client(VmNode(1), timeout=120) as client:
        yield client


def create_web(
    client: docker.DockerClient, info: VmLabInfo, name: str, replicas: int, port: int, **extra: Any
) -> None:
    """A busybox web service (each task answers with its container's name) published on
    ``port`` through the routing mesh (ingress mode)."""
    client.services.create(
        f"{info.images['busybox']}:latest",
        ["sh", "-c", HTTPD],
        name=name,
        init=True,  # busybox httpd as PID 1 ignores SIGTERM: removal would wait 10 s per task
        mode=docker.types.ServiceMode("replicated", replicas=replicas),
        endpoint_spec=docker.types.EndpointSpec(ports={port: 3000}),
        **extra,
    )


def ingress_backends(node: VmNode, port: int) -> set[str] | None:
    """The addresses IPVS in ``node``'s ingress_sbox balances published ``port`` to, read with the
    guest's own tools (iptables-save for the mark, ipvsadm); None while no rule marks the port."""
    mangle = guest(node, "nsenter", f"--net={INGRESS}", "iptables-save", "-t", "mangle")
    marks = [
        line.split("--set-xmark ")[1].split("/")[0]
        for line in mangle.splitlines()
        if f"--dport {port} " in line and "--set-xmark" in line
    ]
    if not marks:
        return None
    table = parse_ipvsadm(guest(node, "nsenter", f"--net={INGRESS}", "ipvsadm", "-Ln", "--exact"))
    return {server[0] for server in table.get(f"FWM {int(marks[0], 16)}", [])}


def lab_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``swarm-autoscaler lab ARGS`` as a person runs it (this checkout's code)."""
    argv = [sys.executable, "-m", "autoscaler", "lab", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)


def running_tasks(client: docker.DockerClient, name: str) -> list[dict[str, Any]]:
    service = client.services.get(name)
    tasks = service.tasks(filters={"desired-state": "running"})
    return [t for t in tasks if t["Status"]["State"] == "running"]


def wait_running(client: docker.DockerClient, name: str, count: int) -> list[dict[str, Any]]:
    return list(
        wait_until(
            lambda: (tasks := running_tasks(client, name)) and len(tasks) == count and tasks,
            deadline=TCG_DEADLINE,
            every=1.0,
            what=f"{count} running tasks of {name}",
        )
    )


def task_address(task: dict[str, Any], network: str) -> str:
    for attachment in task.get("NetworksAttachments") or []:
        if attachment["Network"]["Spec"]["Name"] == network:
            return str(attachment["Addresses"][0]).split("/", 1)[0]
    raise AssertionError(f"task {task['ID']} has no address on {network}: {task.get('NetworksAttachments')}")


def task_hostname(task: dict[str, Any]) -> str:
    return str(task["Status"]["ContainerStatus"]["ContainerID"][:12])


def http_get(host: str, port: int, timeout: float = 30.0) -> str:
    with urllib.request.urlopen(f"http://{host}:{port}/", timeout=timeout) as response:
        return str(response.read().decode().strip())


@contextlib.contextmanager
def held_connections(host: str, port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` TCP connections open (no request sent: busybox httpd waits 60 s for one)."""
    socks = [socket.create_connection((host, port), timeout=30) for _ in range(count)]
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


def probe(node: VmNode, namespace: str) -> dict[str, Any]:
    """The namespace read four ways at one moment, inside the guest (see vm_probe.py), with the
    code of the checkout the guests read (the one that started the lab, as the agent does)."""
    source = vm_lab.guest_source()
    script = str(Path(source.checkout) / PROBE)
    argv = ["env", f"PYTHONPATH={source.pythonpath}", "python3", script, namespace]
    out = vm_exec.check_output(node, argv)
    result: dict[str, Any] = json.loads(out)
    return result


def guest(node: VmNode, *argv: str) -> str:
    return vm_exec.check_output(node, list(argv))


def agent_samples(node: VmNode) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample the node's IPVS agent serves now."""
    with urllib.request.urlopen(node.agent_url, timeout=60) as response:
        text = response.read().decode()
    families = text_string_to_metric_families(text)
    return [(s.name, dict(s.labels), s.value) for f in families for s in f.samples]


# --- ipvsadm's own text, parsed here independently of the code under test ----------------

_SERVICE = re.compile(r"^(FWM|TCP|UDP|SCTP)\s+(\S+)\s+(.*)$")
_SERVER = re.compile(r"^\s+->\s+(\S+):(\d+)\s+(.*)$")


def parse_ipvsadm(text: str) -> dict[str, list[list[Any]]]:
    """``ipvsadm -Ln --exact``: service key -> [[address, port, forward, weight, active, inactive]]."""
    table: dict[str, list[list[Any]]] = {}
    current = None
    for line in text.splitlines():
        if (m := _SERVICE.match(line)) is not None:
            current = f"{m.group(1)} {m.group(2)}"
            table[current] = []
        elif current is not None and (s := _SERVER.match(line)) is not None:
            forward, weight, active, inactive = s.group(3).split()
            address, port = s.group(1), int(s.group(2))
            table[current].append([address, port, forward, int(weight), int(active), int(inactive)])
    return {key: sorted(servers) for key, servers in table.items()}


def parse_ipvsadm_stats(text: str) -> dict[str, int]:
    """``ipvsadm -Ln --stats --exact``: service key -> Conns (cumulative)."""
    conns = {}
    for line in text.splitlines():
        if (m := _SERVICE.match(line)) is not None:
            conns[f"{m.group(1)} {m.group(2)}"] = int(m.group(3).split()[0])
    return conns
