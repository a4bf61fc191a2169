"""VIP load balancing on a real kernel (the VM lab): a service in endpoint mode ``vip`` on an
overlay, client tasks holding connections to its virtual IP, and the agent reading the
overlay's ``lb_`` namespace and naming the service.

What the kernel showed (and this test pins): the client's connection to the VIP is balanced
in the network's ``lb_<id[:9]>`` namespace (mangle INPUT ``-d VIP -j MARK``, FWM service =
the service's LocalLBIndex on that network), and the server sees the lb endpoint's address
as its peer; the client task's own namespace has no IPVS table.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import docker
import pytest
from timing import wait_until
from vm_helpers import TCG_DEADLINE, agent_samples, guest, manager, remove_network, unique, wait_running

from swarm_lab.vm_lab import VmLabInfo
from swarm_lab.vm_layout import VmNode

NODE = VmNode(1)
CLIENTS = 2
pytestmark = pytest.mark.timeout(600)  # TCG: four task starts can take minutes on a busy host
# The server keeps every connection open (echo), so each client's one connection stays
# established for as long as the client holds it.
ECHO_SERVER = "exec nc -ll -p 3000 -e cat"


def _client(server: str) -> str:
    # Reconnects until the VIP's DNS name resolves (a new service takes a moment), then holds
    # the connection open with `-e sleep`, which runs only once connected. Not `sleep 3600 |
    # nc`: a pipeline waits for its sleep too, so an nc that failed ("bad address", asked
    # before the name resolved) held the loop for an hour with no connection (CI, 3 runs).
    return f"while :; do nc {server} 3000 -e sleep 3600; sleep 1; done"


@pytest.fixture
def network(vm_lab: VmLabInfo) -> Iterator[tuple[docker.DockerClient, str, str]]:
    name = unique("vmt-net")
    with manager(vm_lab) as client:
        net = client.networks.create(name, driver="overlay", attachable=True, scope="swarm")
        try:
            yield client, name, str(net.id)
        finally:
            remove_network(net)


def test_vip_connections_are_read_in_the_lb_namespace_and_named(
    network: tuple[docker.DockerClient, str, str],
) -> None:
    client, net_name, net_id = network
    server, caller = unique("vmt-vip"), unique("vmt-cli")
    image = "lab/busybox:latest"
    services = []
    try:
        services.append(
            client.services.create(
                image,
                ["sh", "-c", ECHO_SERVER],
                name=server,
                networks=[net_name],
                init=True,
                mode=docker.types.ServiceMode("replicated", replicas=2),
                endpoint_spec=docker.types.EndpointSpec(mode="vip"),
                constraints=[f"node.hostname=={NODE.hostname}"],
            )
        )
        services.append(
            client.services.create(
                image,
                ["sh", "-c", _client(server)],
                name=caller,
                networks=[net_name],
                init=True,
                mode=docker.types.ServiceMode("replicated", replicas=CLIENTS),
                # A client's connection is balanced in the lb_ namespace of the node it runs on,
                # and this test reads node 1's agent: on two nodes, a client on node 2 was
                # counted there, so node 1 never saw both (CI, 420 s). The servers are on node
                # 1 too, so the test depends on one node's engine only.
                constraints=[f"node.hostname=={NODE.hostname}"],
            )
        )
        wait_running(client, server, 2)
        wait_running(client, caller, CLIENTS)
        namespace = "lb_" + net_id[:9]

        seen: dict[str, object] = {}

        def active() -> float | None:
            record = client.api.inspect_network(net_id, verbose=True, scope="swarm")["Services"][server]
            fwmark = str(record["LocalLBIndex"])
            samples = agent_samples(NODE)
            connections = [
                (labels, v) for name, labels, v in samples if name == "swarm_ipvs_active_connections"
            ]
            # What a timeout reports: what the agent served for this namespace, and its errors.
            seen.update(
                fwmark=fwmark,
                here=[(labels, v) for labels, v in connections if labels["namespace"] == namespace],
                namespaces=sorted({labels["namespace"] for labels, _ in connections}),
                errors=[(name, labels, v) for name, labels, v in samples if "error" in name and v],
            )
            mine = [
                v
                for labels, v in connections
                if labels["namespace"] == namespace
                and labels["fwmark"] == fwmark
                and labels["service"] == server
            ]
            return mine[0] if mine and mine[0] == CLIENTS else None

        try:
            wait_until(
                active,
                deadline=TCG_DEADLINE,
                every=1.0,
                what=f"{CLIENTS} active VIP connections in {namespace}",
            )
        except AssertionError as timed_out:
            table = guest(NODE, "nsenter", f"--net=/var/run/docker/netns/{namespace}", "ipvsadm", "-Ln")
            tasks = [
                (t["Status"]["State"], t["Status"].get("Err")) for t in client.services.get(caller).tasks()
            ]
            raise AssertionError(
                f"{timed_out}; the agent served {seen}; ipvsadm -Ln there:\n{table}\nclients: {tasks}"
            ) from None
    finally:
        for service in services:
            with contextlib.suppress(docker.errors.NotFound):
                service.remove()
