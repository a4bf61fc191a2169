"""The failover monitor with in-memory Swarm fakes: actions, metrics, hold reasons, event wake-ups."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field, replace

import pytest
from prometheus_client import CollectorRegistry
from timing import FakeClock

from autoscaler.core.decision import Decision
from autoscaler.core.failover_tracker import NodeView, TaskView
from autoscaler.core.observation import ServiceState, SwarmEvent
from autoscaler.core.policy import OnTimeout, PolicySpec
from autoscaler.errors import TemporaryTargetError, VersionConflictError
from autoscaler.reconciler.failover_monitor import FailoverMonitor

T0 = 1_700_000_000.0
DOWN_AT = T0 + 2


def spec(on_timeout: OnTimeout = OnTimeout.ALERT, *, max_replicas: int = 10, by: int = 2) -> PolicySpec:
    return PolicySpec.model_validate(
        {
            "service": "web",
            "maxReplicas": max_replicas,
            "metrics": [
                {"name": "rps", "ipvs": {"counter": "connectionRate"}, "target": {"averageValue": 5}}
            ],
            "nodeFailure": {"confirmWithinSeconds": 20, "onTimeout": on_timeout.value, "scaleUpBy": by},
        }
    )


REPLICAS = 3
WEB = ServiceState(id="svc-web", name="web", replicas=REPLICAS, running=3, version=7, updated_at=T0 - 100)


@dataclass
class FakeSwarm:
    """Nodes, tasks and the writes the monitor makes; ``conflicts`` version errors come first."""

    nodes: list[NodeView] = field(default_factory=list)
    tasks: list[TaskView] = field(default_factory=list)
    service: ServiceState | None = WEB
    conflicts: int = 0
    forced: int = 0
    scaled_to: list[int] = field(default_factory=list)
    fail_reads: bool = False
    events_queue: asyncio.Queue[SwarmEvent] = field(default_factory=asyncio.Queue)
    reads: int = 0
    read_done: asyncio.Event = field(default_factory=asyncio.Event)

    async def list_nodes(self) -> list[NodeView]:
        self.reads += 1
        self.read_done.set()
        if self.fail_reads:
            raise TemporaryTargetError("Docker at fake: connection refused")
        return list(self.nodes)

    async def list_tasks(self, service_ids: Collection[str] | None = None) -> list[TaskView]:
        return [t for t in self.tasks if service_ids is None or t.service_id in service_ids]

    async def force_update(self, service_id: str) -> int:
        if self.conflicts:
            self.conflicts -= 1
            raise VersionConflictError("update out of sequence")
        self.forced += 1
        return self.forced

    async def events(self) -> AsyncIterator[SwarmEvent]:
        while True:
            yield await self.events_queue.get()

    async def get_service(self, name: str) -> ServiceState | None:
        return self.service

    async def scale(self, state: ServiceState, replicas: int) -> ServiceState:
        if self.conflicts:
            self.conflicts -= 1
            raise VersionConflictError("update out of sequence")
        self.scaled_to.append(replicas)
        assert self.service is not None
        self.service = replace(self.service, replicas=replicas, version=self.service.version + 1)
        return self.service


def node(n: int, state: str = "ready") -> NodeView:
    return NodeView(id=f"n{n}", hostname=f"host{n}", state=state, availability="active", updated_at=DOWN_AT)


def task(tid: str, node_id: str, slot: int, created: float, state: str = "running") -> TaskView:
    return TaskView(tid, WEB.id, node_id, slot, state, "running", created, created + 1)


def monitor_for(swarm: FakeSwarm, policy: PolicySpec) -> tuple[FailoverMonitor, FakeClock, CollectorRegistry]:
    clock, registry = FakeClock(T0), CollectorRegistry()
    monitor = FailoverMonitor(nodes=swarm, target=swarm, registry=registry, clock=clock, fast_interval=0.01)
    monitor.set_managed([(WEB, policy)])
    return monitor, clock, registry


async def lose_node2(swarm: FakeSwarm, monitor: FailoverMonitor, clock: FakeClock) -> None:
    swarm.nodes = [node(1), node(2), node(3)]
    swarm.tasks = [task("w1", "n1", 1, T0 - 50), task("w2", "n2", 2, T0 - 50)]
    await monitor.resync()
    swarm.nodes = [node(1), node(2, "down"), node(3)]
    clock.now = DOWN_AT + 1
    await monitor.resync()


async def test_node_down_is_counted_and_holds_scale_down_until_the_replacement_runs() -> None:
    swarm = FakeSwarm()
    monitor, clock, registry = monitor_for(swarm, spec())
    await lose_node2(swarm, monitor, clock)
    assert registry.get_sample_value("autoscaler_node_down_events_total", {"kind": "down"}) == 1
    assert registry.get_sample_value("autoscaler_failover_unconfirmed_replacements", {"service": "web"}) == 1
    assert monitor.hold_reason("web") is not None
    assert monitor.hold_reason("other") is None

    clock.now = DOWN_AT + 6
    swarm.tasks.append(task("w2b", "n3", 2, DOWN_AT + 3))
    await monitor.resync()
    assert monitor.hold_reason("web") is None
    assert registry.get_sample_value("autoscaler_failover_unconfirmed_replacements", {"service": "web"}) == 0
    replacement_seconds = clock.now - DOWN_AT
    assert registry.get_sample_value("autoscaler_failover_replacement_seconds_sum") == replacement_seconds
    running_at = DOWN_AT + 3 + 1  # task(): status_at is one second after creation
    assert registry.get_sample_value("autoscaler_failover_confirm_lag_seconds_sum") == clock.now - running_at


@pytest.mark.parametrize(
    ("action", "conflicts", "expected_forced", "expected_scaled", "outcome_word"),
    [
        (OnTimeout.ALERT, 0, 0, [], "reported"),
        (OnTimeout.FORCE_UPDATE, 0, 1, [], "ForceUpdate=1"),
        (OnTimeout.FORCE_UPDATE, 1, 1, [], "ForceUpdate=1"),
        (OnTimeout.SCALE_UP, 0, 0, [REPLICAS + 2], f"{REPLICAS} -> {REPLICAS + 2}"),
        (OnTimeout.SCALE_UP, 1, 0, [REPLICAS + 2], f"{REPLICAS} -> {REPLICAS + 2}"),
    ],
)
async def test_timeout_performs_the_policy_action_once_and_records_the_outcome(
    action: OnTimeout, conflicts: int, expected_forced: int, expected_scaled: list[int], outcome_word: str
) -> None:
    swarm = FakeSwarm()
    monitor, clock, registry = monitor_for(swarm, spec(action))
    await lose_node2(swarm, monitor, clock)
    swarm.conflicts = conflicts
    clock.now = DOWN_AT + 20
    await monitor.resync()
    clock.now += 1
    await monitor.resync()
    assert (swarm.forced, swarm.scaled_to) == (expected_forced, expected_scaled)
    assert (
        registry.get_sample_value(
            "autoscaler_failover_timeouts_total", {"service": "web", "action": action.value}
        )
        == 1
    )
    timeouts = monitor.failovers()[0]["timeouts"]
    assert len(timeouts) == 1 and outcome_word in timeouts[0]["outcome"]


async def test_scale_up_stays_within_max_replicas() -> None:
    swarm = FakeSwarm()
    monitor, clock, _ = monitor_for(swarm, spec(OnTimeout.SCALE_UP, max_replicas=REPLICAS))
    await lose_node2(swarm, monitor, clock)
    clock.now = DOWN_AT + 20
    await monitor.resync()
    assert swarm.scaled_to == []
    assert "maxReplicas" in monitor.failovers()[0]["timeouts"][0]["outcome"]


async def test_a_failing_action_is_reported_not_raised() -> None:
    swarm = FakeSwarm()
    monitor, clock, _ = monitor_for(swarm, spec(OnTimeout.FORCE_UPDATE))
    await lose_node2(swarm, monitor, clock)
    swarm.conflicts = 2
    clock.now = DOWN_AT + 20
    await monitor.resync()
    assert monitor.failovers()[0]["timeouts"][0]["outcome"].startswith("failed: VersionConflictError")


async def test_scale_up_decisions_during_a_failover_say_so() -> None:
    swarm = FakeSwarm()
    monitor, clock, _ = monitor_for(swarm, spec())
    up = Decision(at=clock.now, current=3, running=2, desired=5, recommendation=5, reason="rps 12 > 5")
    assert monitor.during_failover("web", up) is up
    await lose_node2(swarm, monitor, clock)
    annotated = monitor.during_failover("web", up)
    assert annotated.reason.startswith(up.reason) and "failover" in annotated.reason
    keep = replace(up, desired=3)
    assert monitor.during_failover("web", keep) is keep


async def test_read_errors_are_kept_and_counted_and_the_next_resync_recovers() -> None:
    swarm = FakeSwarm(fail_reads=True, nodes=[node(1)])
    monitor, _, registry = monitor_for(swarm, spec())
    assert await monitor.resync() == []
    assert monitor.last_error is not None and "connection refused" in monitor.last_error
    assert registry.get_sample_value("autoscaler_failover_resync_errors_total") == 1
    swarm.fail_reads = False
    await monitor.resync()
    assert monitor.last_error is None


async def test_global_services_are_not_tracked() -> None:
    swarm = FakeSwarm()
    monitor, clock, _ = monitor_for(swarm, spec())
    monitor.set_managed([(replace(WEB, replicas=None), spec())])
    await lose_node2(swarm, monitor, clock)
    assert monitor.failovers()[0]["tasks"] == []


async def test_run_resyncs_on_a_node_event_and_stops() -> None:
    swarm = FakeSwarm(nodes=[node(1)])
    clock, registry = FakeClock(T0), CollectorRegistry()
    never = asyncio.Event()

    async def no_timer(_: float) -> None:
        await never.wait()  # only events wake the monitor in this test

    monitor = FailoverMonitor(nodes=swarm, target=swarm, registry=registry, clock=clock, sleep=no_timer)
    monitor.set_managed([(WEB, spec())])
    runner = asyncio.create_task(monitor.run())
    async with asyncio.timeout(5.0):
        await swarm.read_done.wait()
        swarm.read_done.clear()
        swarm.events_queue.put_nowait(SwarmEvent("node", "update", "node-1", None, 0.0))
        await swarm.read_done.wait()
    assert swarm.reads == 2
    monitor.stop()
    await asyncio.wait_for(runner, timeout=5)


async def test_nothing_is_observed_before_the_loop_names_the_governed_services() -> None:
    swarm = FakeSwarm(nodes=[node(1), node(2, "down")], tasks=[task("w2", "n2", 2, T0 - 50)])
    monitor = FailoverMonitor(nodes=swarm, target=swarm, registry=CollectorRegistry())
    assert await monitor.resync() == [] and swarm.reads == 0
    monitor.set_managed([(WEB, spec())])
    await monitor.resync()
    assert [t["lost_task"] for t in monitor.failovers()[0]["tasks"]] == ["w2"]


async def test_run_survives_a_crashing_resync() -> None:
    swarm = FakeSwarm(nodes=[node(1)])
    crashes = 1
    real_list_nodes = swarm.list_nodes

    async def crash_once() -> list[NodeView]:
        nonlocal crashes
        if crashes:
            crashes -= 1
            raise RuntimeError("a bug")
        return await real_list_nodes()

    swarm.list_nodes = crash_once  # type: ignore[method-assign]
    registry = CollectorRegistry()
    monitor = FailoverMonitor(nodes=swarm, target=swarm, registry=registry, interval=0.01, fast_interval=0.01)
    monitor.set_managed([(WEB, spec())])
    runner = asyncio.create_task(monitor.run())
    async with asyncio.timeout(5.0):
        await swarm.read_done.wait()  # only set by a read after the crash
    monitor.stop()
    await asyncio.wait_for(runner, timeout=5)
    assert crashes == 0


async def test_only_the_leader_performs_actions() -> None:
    swarm = FakeSwarm()
    clock, registry = FakeClock(T0), CollectorRegistry()
    leader = False
    monitor = FailoverMonitor(
        nodes=swarm, target=swarm, registry=registry, clock=clock, may_act=lambda: leader
    )
    monitor.set_managed([(WEB, spec(OnTimeout.SCALE_UP))])
    await lose_node2(swarm, monitor, clock)
    clock.now = DOWN_AT + 20
    await monitor.resync()
    assert swarm.scaled_to == []
    assert "does not hold the lease" in monitor.failovers()[0]["timeouts"][0]["outcome"]


def test_a_fast_interval_longer_than_the_interval_is_capped() -> None:
    swarm = FakeSwarm()
    monitor = FailoverMonitor(nodes=swarm, target=swarm, registry=CollectorRegistry(), interval=0.2)
    assert monitor.fast_interval == monitor.interval
    with pytest.raises(ValueError, match="> 0"):
        FailoverMonitor(nodes=swarm, target=swarm, registry=CollectorRegistry(), interval=0)
