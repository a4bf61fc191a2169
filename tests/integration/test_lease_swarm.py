"""The leader lease against the lab's real Swarm manager.

Candidates run as separate processes (as controller replicas do; lease_candidates.py). The
tests freeze or kill the leader and check from their logs that a standby takes over and that
no process ever acted while another held the lease. How long the take-over takes is measured
by bench/bench_lease_takeover.py, not asserted here.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiodocker
import pytest
from lease_candidates import LEASE, Candidate, start_candidate, wait_for
from timing import eventually

from autoscaler.core import lease_rules as rules
from autoscaler.errors import PermanentTargetError, VersionConflictError
from autoscaler.targets.docker_api import DockerApi
from autoscaler.targets.service_labels import ServiceLabelStore

pytestmark = pytest.mark.integration


def leader_intervals(candidates: list[Candidate], ends: dict[str, float]) -> list[tuple[str, float, float]]:
    """(name, took, lost) for every leadership term.

    ``ends[name]`` is when that candidate stopped being able to act (killed, or frozen by
    SIGSTOP): a term running then ends there at the latest. A frozen leader only logs that it
    lost the lease once thawed, after the standby took over, and cannot act in between; any
    act it makes after thawing falls outside its term and is checked against the new leader's.
    """
    terms = []
    for c in candidates:
        took: float | None = None
        stop = ends.get(c.name)
        for e in c.events:
            if e.get("leader") is True:
                took = e["t"]
            elif e.get("leader") is False and took is not None:
                end = e["t"] if stop is None or stop < took else min(e["t"], stop)
                terms.append((c.name, took, end))
                took = None
        if took is not None:
            terms.append((c.name, took, stop if stop is not None else time.monotonic()))
    return terms


def assert_no_overlapping_action(candidates: list[Candidate], ends: dict[str, float]) -> None:
    terms = leader_intervals(candidates, ends)
    for c in candidates:
        for t in c.acts():
            others = [(n, a, b) for n, a, b in terms if n != c.name and a <= t < b]
            assert not others, f"{c.name} acted at {t:.3f} while {others} held the lease"


@pytest.fixture
def manager_url(lab: Any) -> str:
    return str(lab.manager_url)


@pytest.fixture
async def docker(manager_url: str) -> AsyncIterator[aiodocker.Docker]:
    client = aiodocker.Docker(url=manager_url)
    yield client
    await client.close()


@pytest.fixture
async def controller_service(docker: aiodocker.Docker, lab: Any) -> AsyncIterator[str]:
    """A stand-in for the controller's own service: two long-sleeping busybox tasks."""
    name = f"lease-{uuid.uuid4().hex[:8]}"
    await docker.services.create(
        name=name,
        task_template={
            "ContainerSpec": {"Image": lab.images["busybox"], "Command": ["sleep", "100000"]},
            "RestartPolicy": {"Delay": 0},
        },
        mode={"Replicated": {"Replicas": 2}},
    )
    yield name
    await docker.services.delete(name)


@pytest.fixture
def candidates() -> Iterator[list[Candidate]]:
    started: list[Candidate] = []
    yield started
    for c in started:
        if c.proc.poll() is None:
            c.proc.send_signal(signal.SIGCONT)
            c.proc.kill()
        c.proc.wait(timeout=10)


async def running_task_ids(docker: aiodocker.Docker, service: str) -> set[str]:
    tasks = await docker.tasks.list(filters={"service": service, "desired-state": "running"})
    return {t["ID"] for t in tasks if t["Status"]["State"] == "running"}


async def test_label_writes_do_not_restart_tasks(docker: aiodocker.Docker, controller_service: str) -> None:
    async def two_running() -> set[str] | None:
        ids = await running_task_ids(docker, controller_service)
        return ids if len(ids) >= 2 else None

    before = await eventually(two_running, deadline=60, what="2 running tasks of the stand-in", every=0.1)
    store = ServiceLabelStore(DockerApi(docker), controller_service)
    for i in range(5):
        current = await store.read()
        await store.write(current.version, rules.holder_labels(f"writer-{i}", time.time(), LEASE))
    after_writes = await store.read()
    assert rules.LeaseRecord.from_labels(after_writes.labels).holder == "writer-4"
    info = await docker.services.inspect(controller_service)
    assert info["Spec"]["TaskTemplate"].get("ForceUpdate", 0) == 0
    tasks = await docker.tasks.list(filters={"service": controller_service})
    assert {t["ID"] for t in tasks} == before, "a label-only update replaced tasks"


async def test_a_write_at_a_stale_version_is_a_conflict(
    docker: aiodocker.Docker, controller_service: str
) -> None:
    first, second = (
        ServiceLabelStore(DockerApi(docker), controller_service),
        ServiceLabelStore(DockerApi(docker), controller_service),
    )
    seen_by_first = await first.read()
    seen_by_second = await second.read()
    await second.write(seen_by_second.version, rules.holder_labels("second", time.time(), LEASE))
    with pytest.raises(VersionConflictError):
        await first.write(seen_by_first.version, rules.holder_labels("first", time.time(), LEASE))
    assert rules.LeaseRecord.from_labels((await first.read()).labels).holder == "second"


async def test_unknown_service_says_which_setting_to_fix(docker: aiodocker.Docker) -> None:
    with pytest.raises(PermanentTargetError, match="AUTOSCALER_LEASE__SERVICE"):
        await ServiceLabelStore(DockerApi(docker), f"absent-{uuid.uuid4().hex[:6]}").read()


def test_frozen_leader_is_replaced_within_a_lease_and_never_acts_after(
    manager_url: str, controller_service: str, candidates: list[Candidate]
) -> None:
    candidates += [start_candidate(manager_url, controller_service, n) for n in ("a", "b")]
    wait_for("a first leader", lambda: any(c.took_at() for c in candidates), candidates)
    leader = next(c for c in candidates if c.took_at())
    standby = next(c for c in candidates if c is not leader)
    wait_for("the leader to act", lambda: len(leader.acts()) >= 3, candidates)

    leader.proc.send_signal(signal.SIGSTOP)  # a paused process or cut node: it cannot renew
    frozen_at = time.monotonic()
    took_over = wait_for("the standby to take over", standby.took_at, candidates)
    print(f"take-over after freezing the leader: {took_over - frozen_at:.2f}s (lease {LEASE}s)")

    leader.proc.send_signal(signal.SIGCONT)
    wait_for(
        "the thawed leader to notice it lost the lease",
        lambda: any(e.get("leader") is False for e in leader.events),
        candidates,
    )
    wait_for("the new leader to keep acting", lambda: len(standby.acts()) >= 10, candidates)
    assert_no_overlapping_action(candidates, {leader.name: frozen_at})
    assert leader.acts()[-1] < standby.took_at()[0], "the old leader acted after the take-over"


def test_killed_leader_is_replaced_within_a_lease(
    manager_url: str, controller_service: str, candidates: list[Candidate]
) -> None:
    candidates += [start_candidate(manager_url, controller_service, n) for n in ("a", "b", "c")]
    wait_for("a first leader", lambda: any(c.took_at() for c in candidates), candidates)
    leader = next(c for c in candidates if c.took_at())
    leader.proc.kill()
    killed_at = time.monotonic()
    others = [c for c in candidates if c is not leader]
    took_over = wait_for("another to take over", lambda: any(c.took_at() for c in others), candidates)
    print(f"take-over after killing the leader: {took_over - killed_at:.2f}s (lease {LEASE}s)")
    wait_for("the new leader to act", lambda: sum(len(c.acts()) for c in others) >= 5, candidates)
    assert_no_overlapping_action(candidates, {leader.name: killed_at})
    assert sum(bool(c.took_at()) for c in others) == 1
