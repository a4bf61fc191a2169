"""Node failure on the real lab swarm: the monitor reports it and confirms every replacement.

Each test creates its own busybox service, breaks a worker the way the lab can (link cut,
SIGKILL of dockerd+containerd, SIGTERM of dockerd), and checks the monitor's report against
what Docker itself says: the replacement task's node and state on the manager, and the
container's health on the node that runs it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import aiodocker
import pytest
from prometheus_client import CollectorRegistry
from timing import eventually

from autoscaler.core.policy import PolicySpec
from autoscaler.reconciler.failover_monitor import FailoverMonitor
from autoscaler.targets.swarm import SwarmTarget
from autoscaler.targets.swarm_nodes import SwarmNodes

# A private dev swarm for running this file while others use the shared lab: a script taking
# `nodedown N MODE` / `nodeup N`, with nodes at DEV_IP_PREFIX + (10 + N). Unset in CI.
DEV_SCRIPT = os.environ.get("FAILOVER_DEV_SWARM")
VICTIM = 2  # a worker; node 1 is the manager the controller talks to
HEALTHY_AFTER = 2  # seconds before the test image's HEALTHCHECK passes


@dataclass
class Swarm:
    manager_url: str
    node_urls: list[str]
    node_ips: list[str]
    busybox: str
    node_down: Callable[[int, str], None]
    node_up: Callable[[int], None]


@pytest.fixture(scope="module")
def swarm(request: pytest.FixtureRequest) -> Swarm:
    if DEV_SCRIPT:
        prefix = os.environ["FAILOVER_DEV_IP_PREFIX"]

        def script(*args: object) -> None:
            subprocess.run([DEV_SCRIPT, *map(str, args)], check=True, timeout=120)

        return Swarm(
            manager_url=os.environ["FAILOVER_DEV_MANAGER_URL"],
            node_urls=[os.environ["FAILOVER_DEV_MANAGER_URL"].replace("n1", f"n{i}") for i in (1, 2, 3)],
            node_ips=[f"{prefix}{10 + i}" for i in (1, 2, 3)],
            busybox=os.environ.get("FAILOVER_DEV_BUSYBOX", "lab/busybox"),
            node_down=lambda n, mode: script("nodedown", n, mode),
            node_up=lambda n: script("nodeup", n),
        )
    lab = request.getfixturevalue("lab")
    return Swarm(
        lab.manager_url, lab.node_urls, lab.node_ips, lab.images["busybox"], lab.node_down, lab.node_up
    )


@pytest.fixture
async def docker(swarm: Swarm) -> AsyncIterator[aiodocker.Docker]:
    client = aiodocker.Docker(url=swarm.manager_url)
    yield client
    await client.close()


def policy(service: str, **node_failure: Any) -> PolicySpec:
    return PolicySpec.model_validate(
        {
            "service": service,
            "maxReplicas": 10,
            "metrics": [{"name": "c", "ipvs": {"counter": "activeConnections"}, "target": {"value": 1}}],
            "nodeFailure": node_failure,
        }
    )


async def create_service(
    docker: aiodocker.Docker, swarm: Swarm, replicas: int, constraints: list[str] | None = None
) -> str:
    """A busybox service whose HEALTHCHECK passes ``HEALTHY_AFTER`` s after start; returns its name."""
    name = f"fo-{uuid.uuid4().hex[:8]}"
    spec: dict[str, Any] = {
        "Name": name,
        "Mode": {"Replicated": {"Replicas": replicas}},
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": swarm.busybox,
                "Args": ["sh", "-c", f"sleep {HEALTHY_AFTER}; touch /healthy; exec sleep 100000"],
                # Failures in the start period do not count, so the task stays "starting" until healthy.
                "Healthcheck": {
                    "Test": ["CMD-SHELL", "test -f /healthy"],
                    "Interval": 500_000_000,
                    "StartPeriod": 30_000_000_000,
                },
                "StopGracePeriod": 1_000_000_000,
            },
            "RestartPolicy": {"Condition": "any", "Delay": 0},
            "Placement": {"Constraints": constraints or [], "MaxReplicas": 0},
        },
    }
    await docker._query_json("services/create", method="POST", data=spec)
    return name


async def running_tasks(docker: aiodocker.Docker, service: str) -> list[Mapping[str, Any]]:
    tasks = await docker.tasks.list(filters={"service": service})
    return [t for t in tasks if t["DesiredState"] == "running" and t["Status"]["State"] == "running"]


async def node_hostname(docker: aiodocker.Docker, ip: str) -> str:
    nodes = await docker.nodes.list()
    return str(next(n["Description"]["Hostname"] for n in nodes if n["Status"].get("Addr") == ip))


@asynccontextmanager
async def monitoring(swarm: Swarm, service: str, spec: PolicySpec) -> AsyncIterator[FailoverMonitor]:
    target, nodes = SwarmTarget(swarm.manager_url), SwarmNodes(swarm.manager_url)
    state = await target.get_service(service)
    assert state is not None
    monitor = FailoverMonitor(nodes=nodes, target=target, registry=CollectorRegistry())
    monitor.set_managed([(state, spec)])
    runner = asyncio.create_task(monitor.run())
    try:
        yield monitor
    finally:
        monitor.stop()
        await asyncio.wait_for(runner, timeout=10)
        await target.close()
        await nodes.close()


@contextmanager
def broken(swarm: Swarm, node: int, mode: str) -> Iterator[None]:
    swarm.node_down(node, mode)
    try:
        yield
    finally:
        swarm.node_up(node)  # also when the test fails, so the next test has its three nodes


def of_node(monitor: FailoverMonitor, hostname: str) -> dict[str, Any] | None:
    """The newest failover of ``hostname``: other sessions may break other lab nodes meanwhile."""
    return next((f for f in monitor.failovers() if f["node"] == hostname), None)


async def container_health(swarm: Swarm, docker: aiodocker.Docker, task: Mapping[str, Any]) -> str:
    """The container's health as the dockerd of the node running ``task`` reports it."""
    node = await docker.nodes.inspect(node_id=task["NodeID"])
    url = swarm.node_urls[swarm.node_ips.index(node["Status"]["Addr"])]
    async with aiodocker.Docker(url=url) as on_node:
        container = await on_node.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
        return str(container["State"]["Health"]["Status"])


@pytest.mark.parametrize("mode", ["link", "kill", "stop"])
async def test_failover_is_reported_and_every_replacement_confirmed_healthy(
    swarm: Swarm, docker: aiodocker.Docker, mode: str
) -> None:
    replicas = 6
    service = await create_service(docker, swarm, replicas)
    try:
        await eventually(
            lambda: _count(running_tasks(docker, service), replicas),
            deadline=60,
            what="all running",
            every=0.2,
        )
        victim_host = await node_hostname(docker, swarm.node_ips[VICTIM - 1])
        async with monitoring(swarm, service, policy(service)) as monitor:
            with broken(swarm, VICTIM, mode):

                async def settled() -> dict[str, Any] | None:
                    failover = of_node(monitor, victim_host)
                    return failover if failover and failover["settled_after"] is not None else None

                failover = await eventually(
                    settled, deadline=60, what=f"failover of {victim_host} settled", every=0.2
                )
                assert failover["node"] == victim_host and failover["open"]
                assert failover["tasks"], "the spread placed no task on the victim"
                assert {t["status"] for t in failover["tasks"]} == {"confirmed"}
                # No IPVS agents here (nor IPVS): loadBalancer auto confirms as before, and says so.
                for lost in failover["tasks"]:
                    assert lost["confirm_reason"].startswith(
                        "confirmed: running and healthy (IPVS not checked: "
                    )
                assert monitor.hold_reason(service) is None

                running = {t["ID"]: t for t in await running_tasks(docker, service)}
                for lost in failover["tasks"]:
                    replacement = running[lost["replacement"]]  # Docker says it is running...
                    assert replacement["NodeID"] != failover["node_id"]  # ...elsewhere
                    assert replacement["Slot"] == lost["slot"]
                    assert await container_health(swarm, docker, replacement) == "healthy"
                    assert lost["running_after"] <= lost["confirmed_after"]

                # A controller started now rebuilds the same failover from Swarm's task history.
                async with monitoring(swarm, service, policy(service)) as fresh:
                    await fresh.resync()
                    rebuilt = of_node(fresh, victim_host)
                    assert rebuilt is not None
                    assert rebuilt["found_at_start"] and rebuilt["node"] == victim_host
                    assert {t["slot"] for t in rebuilt["tasks"]} == {t["slot"] for t in failover["tasks"]}
                    assert {t["status"] for t in rebuilt["tasks"]} == {"confirmed"}

            async def closed() -> bool:
                return not (of_node(monitor, victim_host) or {}).get("open", True)

            await eventually(
                closed, deadline=90, what=f"{victim_host} back and the failover closed", every=0.2
            )
    finally:
        await docker.services.delete(service)


async def set_availability(docker: aiodocker.Docker, hostname: str, availability: str) -> None:
    node = next(n for n in await docker.nodes.list() if n["Description"]["Hostname"] == hostname)
    spec = {**node["Spec"], "Availability": availability}
    await docker.nodes.update(node_id=node["ID"], version=node["Version"]["Index"], spec=spec)


async def test_drained_node_is_a_failover_until_it_is_active_again(
    swarm: Swarm, docker: aiodocker.Docker
) -> None:
    service = await create_service(docker, swarm, 6)
    victim_host = await node_hostname(docker, swarm.node_ips[VICTIM - 1])
    try:
        await eventually(
            lambda: _count(running_tasks(docker, service), 6), deadline=60, what="all running", every=0.2
        )
        async with monitoring(swarm, service, policy(service)) as monitor:
            await set_availability(docker, victim_host, "drain")
            try:

                async def settled() -> dict[str, Any] | None:
                    failover = of_node(monitor, victim_host)
                    return failover if failover and failover["settled_after"] is not None else None

                failover = await eventually(
                    settled, deadline=60, what=f"drain of {victim_host} settled", every=0.2
                )
                assert (failover["node"], failover["kind"]) == (victim_host, "drain")
                assert failover["tasks"] and {t["status"] for t in failover["tasks"]} == {"confirmed"}
                running = {t["ID"]: t for t in await running_tasks(docker, service)}
                assert all(
                    running[t["replacement"]]["NodeID"] != failover["node_id"] for t in failover["tasks"]
                )
            finally:
                await set_availability(docker, victim_host, "active")

            async def closed() -> bool:
                return not (of_node(monitor, victim_host) or {}).get("open", True)

            await eventually(
                closed, deadline=30, what=f"{victim_host} active again and the failover closed", every=0.2
            )
    finally:
        await docker.services.delete(service)


async def test_unplaceable_replacement_fires_on_timeout_with_swarms_reason_then_recovers(
    swarm: Swarm, docker: aiodocker.Docker
) -> None:
    victim_host = await node_hostname(docker, swarm.node_ips[VICTIM - 1])
    service = await create_service(docker, swarm, 1, constraints=[f"node.hostname=={victim_host}"])
    try:
        await eventually(
            lambda: _count(running_tasks(docker, service), 1), deadline=60, what="1 running", every=0.2
        )
        before = await docker.services.inspect(service)
        spec = policy(service, confirmWithinSeconds=10, onTimeout="forceUpdate")
        async with monitoring(swarm, service, spec) as monitor:
            with broken(swarm, VICTIM, "link"):

                async def timed_out() -> dict[str, Any] | None:
                    failover = of_node(monitor, victim_host)
                    fired = failover["timeouts"] if failover else []
                    return fired[0] if fired and fired[0]["outcome"] else None

                fired = await eventually(timed_out, deadline=60, what="onTimeout to fire", every=0.2)
                assert fired["action"] == "forceUpdate" and fired["outcome"].startswith("forced")
                assert any("no suitable node" in reason for reason in fired["reasons"])
                assert monitor.hold_reason(service) is not None
                after = await docker.services.inspect(service)
                force = after["Spec"]["TaskTemplate"].get("ForceUpdate", 0)
                assert force == before["Spec"]["TaskTemplate"].get("ForceUpdate", 0) + 1

            async def recovered() -> dict[str, Any] | None:
                failover = of_node(monitor, victim_host)
                return failover if failover and not failover["open"] else None

            failover = await eventually(
                recovered, deadline=90, what="the node back and the failover closed", every=0.2
            )
            assert {t["status"] for t in failover["tasks"]} == {"recovered"}
            assert monitor.hold_reason(service) is None
    finally:
        await docker.services.delete(service)


async def test_swarm_reports_a_healthchecked_task_running_only_once_healthy(
    swarm: Swarm, docker: aiodocker.Docker
) -> None:
    service = await create_service(docker, swarm, 1, constraints=["node.role==manager"])
    seen: list[tuple[str, str]] = []
    try:

        async def healthy_and_running() -> bool:
            tasks = [
                t
                for t in await docker.tasks.list(filters={"service": service})
                if t["Status"].get("ContainerStatus", {}).get("ContainerID")
            ]
            if not tasks:
                return False
            task = tasks[0]
            seen.append((task["Status"]["State"], await container_health(swarm, docker, task)))
            return seen[-1] == ("running", "healthy")

        await eventually(healthy_and_running, deadline=60, what="the task running", every=0.2)
    finally:
        await docker.services.delete(service)
    assert ("starting", "starting") in seen  # Swarm held the task back while the check was failing
    assert all(health == "healthy" for state, health in seen if state == "running")


async def _count(tasks: Awaitable[list[Mapping[str, Any]]], expected: int) -> bool:
    return len(await tasks) == expected
