"""SwarmTarget against a real Swarm manager (the shared lab, or a dockerd named by env).

Services are created through the raw Engine API with aiodocker, so the checks compare what
SwarmTarget reports with what Docker itself says, never with numbers copied from a run.
"""

from __future__ import annotations

import asyncio
import copy
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiodocker
import pytest
from timing import eventually

from autoscaler.errors import PermanentTargetError, TemporaryTargetError, VersionConflictError
from autoscaler.targets.docker_api import DockerApi
from autoscaler.targets.swarm import SwarmEvent, SwarmTarget, parse_timestamp

pytestmark = pytest.mark.integration

DEV_URL_VARIABLE = "SWARM_TARGET_TEST_DOCKER_URL"


@dataclass(frozen=True)
class Manager:
    url: str
    busybox: str


@pytest.fixture(scope="module")
def manager(request: pytest.FixtureRequest) -> Manager:
    try:
        lab = request.getfixturevalue("lab")
    except pytest.FixtureLookupError:
        lab = None
    if lab is not None:
        return Manager(url=lab.manager_url, busybox=lab.images["busybox"])
    url = os.environ.get(DEV_URL_VARIABLE)
    if url is None:
        pytest.skip(f"no `lab` fixture in tests/integration/conftest.py and {DEV_URL_VARIABLE} unset")
    return Manager(url=url, busybox=os.environ.get("SWARM_TARGET_TEST_BUSYBOX", "lab/busybox"))


@pytest.fixture
async def docker(manager: Manager) -> AsyncIterator[aiodocker.Docker]:
    client = aiodocker.Docker(url=manager.url)
    yield client
    await client.close()


@pytest.fixture
async def target(manager: Manager) -> AsyncIterator[SwarmTarget]:
    swarm = SwarmTarget(manager.url, timeout=10.0)
    yield swarm
    await swarm.close()


@pytest.fixture
async def services(
    docker: aiodocker.Docker, manager: Manager
) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """Factory creating busybox services that are all removed after the test."""
    created: list[str] = []

    async def create(mode: dict[str, Any], **extra: Any) -> str:
        spec: dict[str, Any] = {
            "Name": f"t5-{uuid.uuid4().hex[:8]}",
            "Mode": mode,
            "TaskTemplate": {
                "ContainerSpec": {"Image": manager.busybox, "Args": ["sleep", "100000"]},
                "RestartPolicy": {"Condition": "any", "Delay": 0},
            },
        }
        for key, value in extra.items():
            spec[key] = value
        answer = await docker._query_json("services/create", method="POST", data=spec)
        created.append(answer["ID"])
        return str(answer["ID"])

    yield create
    for service_id in created:
        try:
            await docker._query_json(f"services/{service_id}", method="DELETE")
        except aiodocker.DockerError as exc:
            if exc.status != 404:
                raise


async def docker_running(docker: aiodocker.Docker, service_id: str) -> int:
    """Running tasks as Docker's task list reports them (the independent truth)."""
    tasks = await docker.tasks.list(filters={"service": service_id})
    return sum(1 for t in tasks if t["DesiredState"] == "running" and t["Status"]["State"] == "running")


async def ready_nodes(docker: aiodocker.Docker) -> int:
    nodes = await docker.nodes.list()
    return sum(1 for n in nodes if n["Status"]["State"] == "ready" and n["Spec"]["Availability"] == "active")


async def test_list_services_counts_running_tasks(
    docker: aiodocker.Docker, target: SwarmTarget, services: Callable[..., Awaitable[str]]
) -> None:
    two = await services({"Replicated": {"Replicas": 2}})
    zero = await services({"Replicated": {"Replicas": 0}})
    everywhere = await services({"Global": {}})
    nodes = await ready_nodes(docker)

    async def settled() -> bool:
        counts = [await docker_running(docker, s) for s in (two, zero, everywhere)]
        return counts == [2, 0, nodes]

    await eventually(settled, deadline=60, what="2 / 0 / one-per-node running tasks", every=0.2)
    before = target.http_requests
    states = {s.id: s for s in await target.list_services()}
    assert target.http_requests - before == 2  # one services call, one tasks call
    assert (states[two].replicas, states[two].running) == (2, 2)
    assert (states[zero].replicas, states[zero].running) == (0, 0)
    assert (states[everywhere].replicas, states[everywhere].running) == (None, nodes)
    assert states[everywhere].is_global
    one = await target.get_service(states[two].name)
    assert one == states[two]


async def test_scale_bumps_version_and_preserves_every_other_field(
    docker: aiodocker.Docker, target: SwarmTarget, services: Callable[..., Awaitable[str]]
) -> None:
    service_id = await services(
        {"Replicated": {"Replicas": 1}},
        Labels={"team": "a", "autoscale": "true"},
        UpdateConfig={
            "Parallelism": 2,
            "Delay": 1_000_000_000,
            "FailureAction": "pause",
            "MaxFailureRatio": 0.25,
        },
    )
    # ForceUpdate is only settable through an update; it must survive the scale too.
    spec = (await docker._query_json(f"services/{service_id}"))["Spec"]
    spec["TaskTemplate"]["ForceUpdate"] = 3
    spec["TaskTemplate"]["ContainerSpec"]["Env"] = ["A=1", "B=two words"]
    version = (await docker._query_json(f"services/{service_id}"))["Version"]["Index"]
    await docker._query_json(
        f"services/{service_id}/update", method="POST", params={"version": version}, data=spec
    )

    async def rolled_out() -> bool:
        raw = await docker._query_json(f"services/{service_id}")
        return bool(raw.get("UpdateStatus", {}).get("State") == "completed")

    # A rolling update bumps the version as it progresses: read once it is over.
    await eventually(rolled_out, deadline=60, what="the rolling update to complete", every=0.2)
    before = await docker._query_json(f"services/{service_id}")
    state = await target.get_service(service_id)
    assert state is not None and state.version == before["Version"]["Index"]

    scaled = await target.scale(state, 3)

    after = await docker._query_json(f"services/{service_id}")
    assert scaled.version == after["Version"]["Index"] > state.version
    assert scaled.replicas == 3
    expected_spec = copy.deepcopy(before["Spec"])
    expected_spec["Mode"]["Replicated"]["Replicas"] = 3
    assert after["Spec"] == expected_spec
    assert scaled.updated_at >= state.updated_at
    await eventually(
        lambda: _running_is(target, service_id, 3),
        deadline=60,
        what="3 running tasks after scaling",
        every=0.2,
    )


async def _running_is(target: SwarmTarget, service_id: str, count: int) -> bool:
    state = await target.get_service(service_id)
    return state is not None and state.running == count


async def _touch(docker: aiodocker.Docker, service_id: str) -> None:
    """Change a label of the service, as another client would."""
    service = await docker._query_json(f"services/{service_id}")
    service["Spec"]["Labels"] = {"touched": uuid.uuid4().hex}
    await docker._query_json(
        f"services/{service_id}/update",
        method="POST",
        params={"version": service["Version"]["Index"]},
        data=service["Spec"],
    )


async def test_stale_version_is_a_conflict(
    docker: aiodocker.Docker, manager: Manager, target: SwarmTarget, services: Callable[..., Awaitable[str]]
) -> None:
    service_id = await services({"Replicated": {"Replicas": 1}})
    stale = await target.get_service(service_id)
    assert stale is not None
    await _touch(docker, service_id)  # someone else changes the service in between
    with pytest.raises(VersionConflictError, match="re-read"):
        await target.scale(stale, 2)

    # The change lands between scale()'s own read and its write: Swarm itself must refuse.
    class ReadBeforeTheChange(DockerApi):
        async def inspect_service(self, service: str) -> dict[str, Any]:
            return snapshot

    snapshot: dict[str, Any] = await docker._query_json(f"services/{service_id}")
    stale = await target.get_service(service_id)
    assert stale is not None
    await _touch(docker, service_id)
    racer_api = ReadBeforeTheChange(manager.url)
    try:
        with pytest.raises(VersionConflictError, match="out of sequence"):
            await SwarmTarget(racer_api).scale(stale, 2)
    finally:
        await racer_api.close()

    # Two writers from the same read: Swarm's CAS lets exactly one through.
    fresh = await target.get_service(service_id)
    assert fresh is not None
    other = SwarmTarget(manager.url)
    try:
        results = await asyncio.gather(target.scale(fresh, 2), other.scale(fresh, 4), return_exceptions=True)
    finally:
        await other.close()
    conflicts = [r for r in results if isinstance(r, VersionConflictError)]
    wins = [r for r in results if not isinstance(r, BaseException)]
    assert (len(wins), len(conflicts)) == (1, 1), results


async def test_global_service_is_never_scaled(
    target: SwarmTarget, services: Callable[..., Awaitable[str]]
) -> None:
    service_id = await services({"Global": {}})
    state = await target.get_service(service_id)
    assert state is not None and state.replicas is None
    with pytest.raises(PermanentTargetError, match="Global mode"):
        await target.scale(state, 2)


async def test_unknown_service_is_none(target: SwarmTarget) -> None:
    assert await target.get_service(f"no-such-service-{uuid.uuid4().hex}") is None


@pytest.mark.parametrize("url", ["unix:///nonexistent/docker.sock", "tcp://127.0.0.1:1"])
async def test_unreachable_daemon_is_temporary(url: str) -> None:
    target = SwarmTarget(url, timeout=2.0, retries=1)
    try:
        with pytest.raises(TemporaryTargetError, match="after 2 attempts"):
            await target.list_services()
        sent = target.http_requests
        with pytest.raises(TemporaryTargetError, match="after 2 attempts"):
            await target.get_service("web")
        assert target.http_requests - sent == 2  # retries=1: two attempts, then it gives up
    finally:
        await target.close()


async def test_silent_daemon_times_out_as_temporary() -> None:
    """A socket that accepts connections but never answers (the kernel queues them unaccepted)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        target = SwarmTarget(f"tcp://127.0.0.1:{port}", timeout=0.5, retries=1)
        try:
            with pytest.raises(TemporaryTargetError, match=r"no answer within 0.5s"):
                await target.get_service("web")
        finally:
            await target.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T17:35:01.123456789Z", (datetime(2026, 11, 25, 17, 35, 1, tzinfo=UTC), 0.123456789)),
        ("2026-11-25T18:35:01.5+01:00", (datetime(2026, 11, 25, 17, 35, 1, tzinfo=UTC), 0.5)),
        ("2026-11-25T17:35:01Z", (datetime(2026, 11, 25, 17, 35, 1, tzinfo=UTC), 0.0)),
    ],
)
def test_docker_timestamps_keep_their_fraction(text: str, expected: tuple[datetime, float]) -> None:
    whole, fraction = expected
    assert parse_timestamp(text) == pytest.approx(whole.timestamp() + fraction, abs=1e-6)


def test_bad_timestamp_says_what_it_got() -> None:
    with pytest.raises(ValueError, match="not an RFC 3339 timestamp: '2026-11-25 17:35'"):
        parse_timestamp("2026-11-25 17:35")


async def test_update_state_is_reported(
    docker: aiodocker.Docker, target: SwarmTarget, services: Callable[..., Awaitable[str]]
) -> None:
    service_id = await services({"Replicated": {"Replicas": 1}})
    service = await docker._query_json(f"services/{service_id}")
    service["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"] = ["CHANGED=1"]
    await docker._query_json(
        f"services/{service_id}/update",
        method="POST",
        params={"version": service["Version"]["Index"]},
        data=service["Spec"],
    )

    async def rolled_out() -> bool:
        raw = await docker._query_json(f"services/{service_id}")
        state = await target.get_service(service_id)
        docker_says = raw.get("UpdateStatus", {}).get("State")
        return state is not None and docker_says == "completed" and state.update_state == docker_says

    await eventually(rolled_out, deadline=60, what="the rolling update to complete", every=0.2)


async def test_events_report_service_create_update_remove(
    docker: aiodocker.Docker, target: SwarmTarget, services: Callable[..., Awaitable[str]]
) -> None:
    seen: list[SwarmEvent] = []

    async def collect() -> None:
        async for event in target.events():
            seen.append(event)

    collector = asyncio.create_task(collect())
    try:
        # The stream only shows what happens after it connects: touch a probe until it is seen.
        probe = await services({"Replicated": {"Replicas": 0}})

        async def probe_seen() -> bool:
            if any(e.id == probe for e in seen):
                return True
            await _touch(docker, probe)
            return False

        await eventually(probe_seen, deadline=30, what="the event stream to deliver a probe event", every=0.2)
        service_id = await services({"Replicated": {"Replicas": 0}})
        state = await target.get_service(service_id)
        assert state is not None
        await target.scale(state, 1)
        await docker._query_json(f"services/{service_id}", method="DELETE")

        async def all_seen() -> bool:
            actions = {e.action for e in seen if e.kind == "service" and e.id == service_id}
            return {"create", "update", "remove"} <= actions

        await eventually(
            all_seen, deadline=30, what=f"create/update/remove events of {service_id}", every=0.2
        )
        mine = [e for e in seen if e.kind == "service" and e.id == service_id]
        assert {e.name for e in mine} == {state.name}
        assert all(abs(e.at - time.time()) < 300 for e in mine)
    finally:
        collector.cancel()
        with pytest.raises(asyncio.CancelledError):
            await collector
