"""The leader lease against the lab's real Swarm manager.

Candidates run as separate processes (as controller replicas do), each "acting" every
50 ms while ``is_leader()`` says so and printing what it did with a CLOCK_MONOTONIC stamp
(system-wide, so stamps compare across processes). The tests freeze or kill the leader and
check from those logs that a standby takes over within about a lease period and that no
process ever acted while another held the lease.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiodocker
import pytest

from autoscaler.core import lease_rules as rules
from autoscaler.errors import PermanentTargetError, VersionConflictError
from autoscaler.targets.docker_api import DockerApi
from autoscaler.targets.service_labels import ServiceLabelStore

pytestmark = pytest.mark.integration

LEASE = 3.0
CANDIDATE = """
import asyncio, json, sys, time
from autoscaler.reconciler.lease import Lease
from autoscaler.targets.docker_api import DockerApi
from autoscaler.targets.service_labels import ServiceLabelStore

def say(**event):
    print(json.dumps({"t": time.monotonic(), **event}), flush=True)

async def main(url, service, identity, lease_seconds):
    lease = Lease(ServiceLabelStore(DockerApi(url), service), identity=identity, lease_seconds=lease_seconds,
                  on_change=lambda leading: say(leader=leading))
    runner = asyncio.create_task(lease.run())
    while not runner.done():
        if lease.is_leader():
            say(act=True)
        await asyncio.sleep(0.05)
    runner.result()

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
"""


@dataclass
class Candidate:
    name: str
    proc: subprocess.Popen[str]
    events: list[dict[str, Any]] = field(default_factory=list)

    def drain(self) -> None:
        """Read what the process printed so far (its stdout is non-blocking)."""
        assert self.proc.stdout is not None
        while line := self.proc.stdout.readline():
            self.events.append(json.loads(line))

    def took_at(self) -> list[float]:
        return [e["t"] for e in self.events if e.get("leader") is True]

    def acts(self) -> list[float]:
        return [e["t"] for e in self.events if e.get("act")]


def start_candidate(url: str, service: str, name: str) -> Candidate:
    proc = subprocess.Popen(
        [sys.executable, "-c", CANDIDATE, url, service, name, str(LEASE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    return Candidate(name, proc)


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


def wait_for(what: str, condition: Any, candidates: list[Candidate], timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in candidates:
            c.drain()
        if condition():
            return time.monotonic()
        time.sleep(0.02)  # pacing a poll loop, not synchronising: the condition decides
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}: {[c.events[-3:] for c in candidates]}"
    )


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
    deadline = time.monotonic() + 60
    while len(before := await running_task_ids(docker, controller_service)) < 2:
        assert time.monotonic() < deadline, "the stand-in service never got 2 running tasks"
        await asyncio.sleep(0.1)
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
    took_over = wait_for("the standby to take over", standby.took_at, candidates, timeout=4 * LEASE)
    print(f"take-over after freezing the leader: {took_over - frozen_at:.2f}s (lease {LEASE}s)")
    assert took_over - frozen_at <= LEASE + LEASE / 3 + 1.0

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
    assert took_over - killed_at <= LEASE + LEASE / 3 + 1.0
    wait_for("the new leader to act", lambda: sum(len(c.acts()) for c in others) >= 5, candidates)
    assert_no_overlapping_action(candidates, {leader.name: killed_at})
    assert sum(bool(c.took_at()) for c in others) == 1
