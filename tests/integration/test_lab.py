"""The lab itself, for real: a multi-node Swarm, spreading, Prometheus discovery, load, node failure."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from timing import wait_until

from swarm_lab import create_service, layout, scrape_labels, swarm
from swarm_lab.lab import NodeDownMode
from swarm_lab.sessions import LabHandle as Lab

NODE_COUNT = 3


def query(lab: Lab, promql: str) -> list[dict[str, Any]]:
    url = f"{lab.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


@pytest.fixture
def manager(lab: Lab) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=lab.manager_url, version="1.41", timeout=30)
    yield client
    client.close()


@pytest.fixture
def temporary_services(manager: docker.DockerClient) -> Iterator[list[Any]]:
    created: list[Any] = []
    yield created
    for service in created:
        service.remove()


def node_state(manager: docker.DockerClient, ip: str) -> str:
    states = {n.attrs["Status"].get("Addr"): n.attrs["Status"]["State"] for n in manager.nodes.list()}
    return str(states.get(ip))


def running_tasks(service: Any) -> list[dict[str, Any]]:
    tasks = service.tasks(filters={"desired-state": "running"})
    return [t for t in tasks if t["Status"]["State"] == "running"]


def test_lab_is_a_swarm_of_distinct_ready_nodes(lab: Lab, manager: docker.DockerClient) -> None:
    nodes = manager.nodes.list()
    assert len(nodes) == NODE_COUNT == len(lab.node_urls)
    assert {n.attrs["Status"]["State"] for n in nodes} == {"ready"}
    assert len({n.id for n in nodes}) == NODE_COUNT
    assert sorted(n.attrs["Status"]["Addr"] for n in nodes) == sorted(lab.node_ips)
    engine_ids = set()
    for url in lab.node_urls:
        client = docker.DockerClient(base_url=url, version="1.41", timeout=10)
        engine_ids.add(client.info()["ID"])
        client.close()
    assert len(engine_ids) == NODE_COUNT, "nodes share an engine ID (deprecated-key-path not per node?)"
    managers = [n for n in nodes if n.attrs["Spec"]["Role"] == "manager"]
    assert [m.attrs["Status"]["Addr"] for m in managers] == [lab.node_ips[0]]


def ready_node_ids(manager: docker.DockerClient) -> set[str]:
    return {n.id for n in manager.nodes.list() if n.attrs["Status"]["State"] == "ready"}


def test_a_service_spreads_over_all_nodes(
    lab: Lab, manager: docker.DockerClient, temporary_services: list[Any]
) -> None:
    ready_before = ready_node_ids(manager)
    service = create_service(
        manager,
        f"spread-{uuid.uuid4().hex[:6]}",
        lab.images["busybox"],
        replicas=NODE_COUNT * 2,
        command=["sleep", "100000"],
    )
    temporary_services.append(service)

    def all_running() -> list[dict[str, Any]] | None:
        tasks = running_tasks(service)
        return tasks if len(tasks) == NODE_COUNT * 2 else None

    used_nodes = {t["NodeID"] for t in wait_until(all_running, deadline=60, what="all replicas running")}
    if ready_node_ids(manager) == ready_before == {n.id for n in manager.nodes.list()}:
        assert len(used_nodes) == NODE_COUNT
    else:  # another session's failure test took a node away meanwhile
        assert len(used_nodes) >= 2


def test_prometheus_discovers_any_labelled_service(
    lab: Lab, manager: docker.DockerClient, temporary_services: list[Any]
) -> None:
    name = f"disc-{uuid.uuid4().hex[:6]}"
    service = create_service(manager, name, lab.images["web"], replicas=2, labels=scrape_labels(8000))
    temporary_services.append(service)
    wait_until(lambda: len(running_tasks(service)) == 2, deadline=60, what="2 replicas running")

    def both_replicas_up() -> list[dict[str, Any]] | None:
        series = [s for s in query(lab, f'up{{service="{name}"}}') if s["value"][1] == "1"]
        return series if len(series) == 2 else None

    series = wait_until(
        both_replicas_up,
        deadline=30,
        what=f"Prometheus scraping both replicas of {name}",
    )
    task_nodes = {t["NodeID"] for t in running_tasks(service)}
    hostnames = {manager.nodes.get(node_id).attrs["Description"]["Hostname"] for node_id in task_nodes}
    assert {s["metric"]["node"] for s in series} == hostnames
    assert {s["metric"]["task"] for s in series} == {f"{name}.1", f"{name}.2"}


@pytest.fixture
def sample(lab: Lab) -> Iterator[Lab]:
    lab.deploy_sample()
    yield lab
    lab.set_load(0)


def test_request_rate_follows_offered_load(sample: Lab) -> None:
    offered = 40.0
    sample.set_load(offered)
    rate = 'sum(rate(http_requests_total{service="web",path="/"}[5s]))'
    # Held for 8 s of 1 s evaluations (a subquery), not one lucky sample.
    low_high = f"min_over_time({rate}[8s:1s]) or vector(0)", f"max_over_time({rate}[8s:1s]) or vector(0)"

    def held_within_20_percent() -> tuple[float, float] | None:
        low, high = (float(query(sample, q)[0]["value"][1]) for q in low_high)
        return (low, high) if 0.8 * offered <= low and high <= 1.2 * offered else None

    wait_until(held_within_20_percent, deadline=90, what=f"{rate} within 20% of {offered} for 8 s")
    sample.set_load(0)
    wait_until(
        lambda: float(query(sample, f"{rate} or vector(0)")[0]["value"][1]) < 0.1 * offered,
        deadline=60,
        what="the rate to fall once the load stops",
    )


@pytest.mark.parametrize("mode", ["link", "kill", "stop"])
def test_node_down_then_up(lab: Lab, manager: docker.DockerClient, mode: NodeDownMode) -> None:
    victim = NODE_COUNT  # a worker: the manager must stay to report it
    ip = lab.node_ips[victim - 1]
    try:
        lab.node_down(victim, mode)
        lab.node_down(victim, mode)  # idempotent
        wait_until(lambda: node_state(manager, ip) == "down", deadline=30, what=f"node {victim} Down")
    finally:
        lab.node_up(victim)
        lab.node_up(victim)  # idempotent
    wait_until(lambda: node_state(manager, ip) == "ready", deadline=60, what=f"node {victim} Ready again")


def test_rendered_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool missing: it comes with the Debian package prometheus the lab needs")
    nodes = layout.nodes(4)
    config = tmp_path / "prometheus.yml"
    config.write_text(swarm.prometheus_config(nodes))
    check = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    text = config.read_text()
    assert all(f"{n.ip}:{layout.DOCKER_METRICS_PORT}" in text for n in nodes)
    assert "${" not in text
