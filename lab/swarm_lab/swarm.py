"""The lab's Swarm: init on node 1, join the others, the attachable overlay, and lab services."""

from __future__ import annotations

import hashlib
import string
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import docker
from docker.types import ConfigReference, EndpointSpec, Mount, RestartPolicy, ServiceMode

from swarm_lab import daemons, images, layout
from swarm_lab.errors import LabError

HEARTBEAT_NS = 1_000_000_000  # 1 s: a lost node is Down in ~3 s instead of ~11 s
SCRAPE_LABEL = "prometheus.scrape"
PORT_LABEL = "prometheus.port"
WEB = "web"
LOADGEN = "loadgen"
PROMETHEUS = "prometheus"


class SwarmNode(daemons.Engine, Protocol):
    """What forming a swarm needs of a node (both labs' nodes have it)."""

    @property
    def ip(self) -> str: ...
    @property
    def hostname(self) -> str: ...


@dataclass(frozen=True)
class SwarmSettings:
    """How a lab's swarm is made: overlay address pool, heartbeat, its attachable overlay."""

    address_pool: str
    heartbeat_ns: int
    network: str
    ready_timeout: float


NETNS_SWARM = SwarmSettings(layout.ADDRESS_POOL, HEARTBEAT_NS, layout.NETWORK, ready_timeout=60.0)


def ensure_swarm(nodes: Sequence[SwarmNode], settings: SwarmSettings = NETNS_SWARM) -> None:
    """Node 1 the manager, the others joined as workers, all ready, and the lab overlay."""
    manager = nodes[0]
    with daemons.client(manager) as client:
        if client.info()["Swarm"]["LocalNodeState"] != "active":
            client.swarm.init(
                advertise_addr=manager.ip,
                listen_addr=f"{manager.ip}:2377",
                default_addr_pool=[settings.address_pool],
                subnet_size=24,
                dispatcher_heartbeat_period=settings.heartbeat_ns,
            )
        client.swarm.reload()
        token = client.swarm.attrs["JoinTokens"]["Worker"]
    for node in nodes[1:]:
        join(node, manager, token)
    wait_nodes_ready(manager, len(nodes), settings.ready_timeout)
    with daemons.client(manager) as client:
        if not client.networks.list(names=[settings.network]):
            client.networks.create(settings.network, driver="overlay", attachable=True, scope="swarm")


def join(node: SwarmNode, manager: SwarmNode, token: str) -> None:
    """Join ``node`` as a worker unless it is in the swarm. A node that joins anew (an engine
    whose state was lost, like a rebooted VM's) replaces its earlier entries of the same
    hostname: their engine is gone, and a stale entry would hold its tasks and show Down for ever."""
    with daemons.client(node) as worker:
        if worker.info()["Swarm"]["LocalNodeState"] == "active":
            return
        worker.swarm.join(
            remote_addrs=[f"{manager.ip}:2377"],
            join_token=token,
            listen_addr=f"{node.ip}:2377",
            advertise_addr=node.ip,
        )
        new_id = worker.info()["Swarm"]["NodeID"]
    with daemons.client(manager) as client:
        for entry in client.nodes.list(filters={"name": node.hostname}):
            if entry.attrs["Description"]["Hostname"] == node.hostname and entry.id != new_id:
                entry.remove(force=True)


def worker_token(manager: SwarmNode) -> str:
    with daemons.client(manager) as client:
        return str(client.swarm.attrs["JoinTokens"]["Worker"])


def node_states(manager: SwarmNode = layout.MANAGER) -> list[dict[str, str]]:
    with daemons.client(manager, timeout=10) as client:
        return [
            {
                "id": n.attrs["ID"],
                "hostname": n.attrs["Description"]["Hostname"],
                "role": n.attrs["Spec"]["Role"],
                "state": n.attrs["Status"]["State"],
                "availability": n.attrs["Spec"]["Availability"],
                "addr": n.attrs["Status"].get("Addr", ""),
            }
            for n in client.nodes.list()
        ]


def ready_count(manager: SwarmNode = layout.MANAGER) -> int:
    """How many nodes the manager sees ready; -1 when it does not answer."""
    try:
        return sum(s["state"] == "ready" for s in node_states(manager))
    except Exception:  # manager not answering
        return -1


def wait_nodes_ready(manager: SwarmNode, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    states: list[dict[str, str]] = []
    while time.monotonic() < deadline:
        states = node_states(manager)
        if sum(s["state"] == "ready" for s in states) >= count:
            return
        time.sleep(0.2)
    raise LabError(f"only {[s['hostname'] + ':' + s['state'] for s in states]} after {timeout:.0f}s")


def scrape_labels(port: int) -> dict[str, str]:
    """Labels that make the lab Prometheus scrape a service's tasks on ``port``."""
    return {SCRAPE_LABEL: "true", PORT_LABEL: str(port)}


def create_service(
    client: docker.DockerClient,
    name: str,
    image: str,
    *,
    replicas: int = 1,
    env: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    constraints: Sequence[str] = (),
    host_ports: Mapping[int, int] | None = None,
    restart_condition: str = "any",
    **extra: Any,
) -> Any:
    """A replicated service on the lab overlay in dnsrr mode (no IPVS here, so no VIP)."""
    ports = {published: (target, "tcp", "host") for published, target in (host_ports or {}).items()}
    return client.services.create(
        _tagged(image),
        name=name,
        env=[f"{k}={v}" for k, v in (env or {}).items()],
        labels=dict(labels or {}),
        constraints=list(constraints),
        networks=[layout.NETWORK],
        endpoint_spec=EndpointSpec(mode="dnsrr", ports=ports or None),
        mode=ServiceMode("replicated", replicas=replicas),
        restart_policy=RestartPolicy(condition=restart_condition, delay=0),
        **extra,
    )


def _tagged(image: str) -> str:
    """``lab/web`` -> ``lab/web:latest``. `docker service scale` writes the spec back with the
    tag spelled out; an untagged image would differ, which Swarm treats as a task change and
    answers with a rolling update instead of a plain scale."""
    last = image.rsplit("/", 1)[-1]
    return image if ":" in last or "@" in image else f"{image}:latest"


def _find_service(client: docker.DockerClient, name: str) -> Any | None:
    found = [s for s in client.services.list(filters={"name": name}) if s.name == name]
    return found[0] if found else None


def prometheus_config(nodes: Sequence[layout.Node]) -> str:
    template = string.Template((images.ASSETS / "prometheus" / "prometheus.yml.tmpl").read_text())
    targets = "[" + ", ".join(f"'{n.ip}:{layout.DOCKER_METRICS_PORT}'" for n in nodes) + "]"
    return template.substitute(DOCKERD_TARGETS=targets, NETWORK=layout.NETWORK)


def ensure_prometheus(nodes: Sequence[layout.Node]) -> None:
    config = prometheus_config(nodes)
    config_name = "swl-prometheus-" + hashlib.sha256(config.encode()).hexdigest()[:12]
    with daemons.client(nodes[0]) as client:
        existing = client.configs.list(filters={"name": config_name})
        config_id = existing[0].id if existing else client.configs.create(name=config_name, data=config).id
        service = _find_service(client, PROMETHEUS)
        if service is not None:
            refs = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"].get("Configs") or []
            if any(r["ConfigName"] == config_name for r in refs):
                return
            service.remove()  # config changed: recreate (host port 9090 frees when the task stops)
        create_service(
            client,
            PROMETHEUS,
            images.PROMETHEUS,
            labels=scrape_labels(layout.PROMETHEUS_PORT),
            constraints=["node.role==manager"],
            host_ports={layout.PROMETHEUS_PORT: layout.PROMETHEUS_PORT},
            # Service discovery reads the manager's Swarm API through its socket.
            mounts=[Mount("/var/run/docker.sock", str(nodes[0].socket), type="bind")],
            configs=[ConfigReference(config_id, config_name, filename="/etc/prometheus/prometheus.yml")],
        )


def deploy_sample(replicas: int = 2, work_ms: float = 2.0) -> None:
    """The sample app ``web`` and an idle ``loadgen`` aimed at it. Existing ones are left as they are."""
    with daemons.client(layout.MANAGER) as client:
        if _find_service(client, WEB) is None:
            create_service(
                client,
                WEB,
                images.WEB,
                replicas=replicas,
                env={"WORK_MS": str(work_ms)},
                labels=scrape_labels(8000),
            )
        if _find_service(client, LOADGEN) is None:
            create_service(
                client,
                LOADGEN,
                images.LOADGEN,
                replicas=0,
                env={"RATE": "0", "TARGET": WEB},
                labels=scrape_labels(8001),
                restart_condition="on-failure",  # done after DURATION means done
            )


def set_load(rps: float, target: str = WEB, duration_s: float = 3600.0) -> None:
    """Offer ``rps`` requests/s to ``target`` from the loadgen service; 0 stops it."""
    if rps < 0:
        raise LabError(f"--rps must be >= 0, got {rps}")
    with daemons.client(layout.MANAGER) as client:
        service = _find_service(client, LOADGEN)
        if service is None:
            raise LabError("no loadgen service: run `swarm-autoscaler lab deploy-sample` first")
        env = {"RATE": f"{rps:g}", "TARGET": target, "DURATION": f"{duration_s:g}"}
        service.update(
            env=[f"{k}={v}" for k, v in env.items()],
            mode=ServiceMode("replicated", replicas=1 if rps > 0 else 0),
            force_update=True,
        )


def services_summary(manager: SwarmNode = layout.MANAGER) -> list[dict[str, Any]]:
    with daemons.client(manager, timeout=10) as client:
        summary = []
        for service in client.services.list():
            tasks = service.tasks(filters={"desired-state": "running"})
            running = sum(t["Status"]["State"] == "running" for t in tasks)
            replicas = service.attrs["Spec"].get("Mode", {}).get("Replicated", {}).get("Replicas")
            summary.append({"name": service.name, "replicas": replicas, "running": running})
        return summary


def swarm_network_ids(nodes: Sequence[layout.Node]) -> list[str]:
    """IDs of the swarm-scoped networks, from the first node that answers ([] if none does)."""
    for node in nodes:
        if not daemons.answers(node):
            continue
        with daemons.client(node, timeout=5) as client:
            return [n.id for n in client.networks.list() if n.attrs.get("Scope") == "swarm"]
    return []
