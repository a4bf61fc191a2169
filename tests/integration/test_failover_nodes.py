"""SwarmNodes against a real manager: reads agree with Docker's own answers, errors are ours."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiodocker
import pytest
from timing import eventually

from autoscaler.errors import PermanentTargetError, TemporaryTargetError
from autoscaler.targets.swarm import SwarmTarget, parse_timestamp
from autoscaler.targets.swarm_nodes import SwarmNodes

DEV_MANAGER = os.environ.get("FAILOVER_DEV_MANAGER_URL")  # see test_failover_lab.py


@pytest.fixture(scope="module")
def manager(request: pytest.FixtureRequest) -> tuple[str, str]:
    if DEV_MANAGER:
        return DEV_MANAGER, os.environ.get("FAILOVER_DEV_BUSYBOX", "lab/busybox")
    lab = request.getfixturevalue("lab")
    return lab.manager_url, lab.images["busybox"]


@pytest.fixture(scope="module")
def network(request: pytest.FixtureRequest) -> str:
    """An overlay network the services can join (the lab's; FAILOVER_DEV_NETWORK with a dev manager)."""
    if DEV_MANAGER:
        return os.environ.get("FAILOVER_DEV_NETWORK", "lab-net")
    return str(request.getfixturevalue("lab").network)


@pytest.fixture
async def docker(manager: tuple[str, str]) -> AsyncIterator[aiodocker.Docker]:
    client = aiodocker.Docker(url=manager[0])
    yield client
    await client.close()


async def test_nodes_are_read_as_docker_reports_them(docker: aiodocker.Docker) -> None:
    raw = {n["ID"]: n for n in await docker.nodes.list()}
    async with _closing(SwarmNodes(docker)) as nodes:
        views = await nodes.list_nodes()
    assert {v.id for v in views} == set(raw)
    for view in views:
        node = raw[view.id]
        assert view.hostname == node["Description"]["Hostname"]
        assert (view.state, view.availability) == (node["Status"]["State"], node["Spec"]["Availability"])
        assert view.updated_at == parse_timestamp(node["UpdatedAt"])


async def test_tasks_are_filtered_by_exact_service_id(
    docker: aiodocker.Docker, manager: tuple[str, str]
) -> None:
    # Docker's "service" filter also matches name prefixes: "x" and "x-more" must not mix.
    base = f"fon-{uuid.uuid4().hex[:6]}"
    ids = [
        await _create(docker, manager[1], name, replicas)
        for name, replicas in ((base, 1), (f"{base}-more", 2))
    ]
    try:
        async with _closing(SwarmNodes(manager[0])) as nodes:

            async def scheduled() -> list[Any] | None:
                tasks = await nodes.list_tasks([ids[0]])
                return tasks if tasks and all(t.node_id for t in tasks) else None

            tasks = await eventually(scheduled, deadline=60, what="the task scheduled", every=0.2)
            assert {t.service_id for t in tasks} == {ids[0]}
            raw = await docker.tasks.list(filters={"service": ids[0]})
            assert {t.id for t in tasks} == {r["ID"] for r in raw if r["ServiceID"] == ids[0]}
            assert [t.slot for t in tasks] == [1]
            both = await nodes.list_tasks(ids)
            assert {t.service_id for t in both} == set(ids)
            assert await nodes.list_tasks([]) == []
    finally:
        for service_id in ids:
            await docker.services.delete(service_id)


async def test_task_addresses_and_vip_are_read_as_docker_reports_them(
    docker: aiodocker.Docker, manager: tuple[str, str], network: str
) -> None:
    """What the IPVS check matches on: a task's attachment addresses, and whether Swarm gave
    the service virtual IPs (VIP endpoint mode: yes, even on this lab without IPVS; dnsrr: no)."""
    base = f"fon-lb-{uuid.uuid4().hex[:6]}"
    names = {"vip": f"{base}-vip", "dnsrr": f"{base}-rr"}
    ids = {
        mode: await _create(docker, manager[1], name, 2, network=network, endpoint_mode=mode)
        for mode, name in names.items()
    }
    try:
        async with _closing(SwarmNodes(manager[0])) as nodes:

            async def addressed() -> list[Any] | None:
                tasks = [t for t in await nodes.list_tasks(list(ids.values())) if t.addresses]
                return tasks if len(tasks) == 4 else None

            tasks = await eventually(addressed, deadline=90, what="4 tasks with network addresses", every=0.2)
            raw = {r["ID"]: r for r in await docker.tasks.list(filters={"service": list(ids.values())})}
            for view in tasks:
                attachments = raw[view.id]["NetworksAttachments"]
                assert view.addresses == tuple(a.split("/")[0] for n in attachments for a in n["Addresses"])
                assert all(re.fullmatch(r"\d+\.\d+\.\d+\.\d+", a) for a in view.addresses)
        target = SwarmTarget(manager[0])
        try:
            states = {mode: await target.get_service(name) for mode, name in names.items()}
        finally:
            await target.close()
        assert states["vip"] is not None and states["vip"].load_balanced
        assert states["dnsrr"] is not None and not states["dnsrr"].load_balanced
    finally:
        for service_id in ids.values():
            await docker.services.delete(service_id)


async def test_force_update_of_a_missing_service_is_permanent(manager: tuple[str, str]) -> None:
    async with _closing(SwarmNodes(manager[0])) as nodes:
        with pytest.raises(PermanentTargetError, match="404"):
            await nodes.force_update("no-such-service-" + uuid.uuid4().hex[:6])


async def test_unreachable_daemon_is_temporary(tmp_path: Any) -> None:
    async with _closing(SwarmNodes(f"unix://{tmp_path}/nothing.sock", timeout=2)) as nodes:
        with pytest.raises(TemporaryTargetError, match=re.escape("nothing.sock")):
            await nodes.list_nodes()


async def test_bad_url_is_permanent_and_says_how_to_fix() -> None:
    async with _closing(SwarmNodes("ftp://somewhere")) as nodes:
        with pytest.raises(PermanentTargetError, match=re.escape("unix:///path/docker.sock")):
            await nodes.list_nodes()


async def _create(
    docker: aiodocker.Docker,
    image: str,
    name: str,
    replicas: int,
    *,
    network: str | None = None,
    endpoint_mode: str | None = None,
) -> str:
    spec: dict[str, Any] = {
        "Name": name,
        "Mode": {"Replicated": {"Replicas": replicas}},
        "TaskTemplate": {"ContainerSpec": {"Image": image, "Args": ["sleep", "100000"]}},
    }
    if network is not None:
        spec["TaskTemplate"]["Networks"] = [{"Target": network}]
    if endpoint_mode is not None:
        spec["EndpointSpec"] = {"Mode": endpoint_mode}
    answer = await docker._query_json("services/create", method="POST", data=spec)
    return str(answer["ID"])


class _closing:
    def __init__(self, nodes: SwarmNodes) -> None:
        self.nodes = nodes

    async def __aenter__(self) -> SwarmNodes:
        return self.nodes

    async def __aexit__(self, *exc: object) -> None:
        await self.nodes.close()
