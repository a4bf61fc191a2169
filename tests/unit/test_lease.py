"""The Lease object against an in-memory CAS store and a fake clock.

The simulation runs several candidates that step at their own pace, suffer network
partitions (their reads and writes fail), slow writes and label wipes, and checks at every
instant that at most one of them believes it leads.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from timing import FakeClock

from autoscaler.core import lease_rules as rules
from autoscaler.core.lease_rules import SpecLabels
from autoscaler.errors import TemporaryTargetError, VersionConflictError
from autoscaler.reconciler.lease import Lease

LEASE = 6.0


@dataclass
class Swarm:
    """The service spec: a version and labels, updated only by compare-and-swap."""

    clock: FakeClock
    version: int = 1
    labels: dict[str, str] = field(default_factory=dict)
    writes: int = 0
    history: list[dict[str, str]] = field(default_factory=list)

    def wipe(self) -> None:
        self.labels = {}
        self.version += 1

    def rollback(self) -> None:
        """``docker service rollback``: the labels of an earlier spec come back."""
        if self.history:
            self.labels = dict(self.history[len(self.history) // 2])
            self.version += 1


@dataclass
class SwarmView:
    """One candidate's connection to the swarm: it can be cut, and its writes can be slow."""

    swarm: Swarm
    cut: bool = False
    write_latency: float = 0.0

    async def read(self) -> SpecLabels:
        if self.cut:
            raise TemporaryTargetError("connection refused")
        return SpecLabels(self.swarm.version, dict(self.swarm.labels))

    async def write(self, version: int, labels: dict[str, str]) -> None:
        if self.cut:
            raise TemporaryTargetError("connection refused")
        self.swarm.clock.now += self.write_latency
        if version != self.swarm.version:
            raise VersionConflictError("update out of sequence")
        self.swarm.history.append(self.swarm.labels)
        self.swarm.labels = {**self.swarm.labels, **labels}
        self.swarm.version += 1
        self.swarm.writes += 1


def make(swarm: Swarm, name: str) -> tuple[Lease, SwarmView]:
    view = SwarmView(swarm)
    return Lease(view, identity=name, lease_seconds=LEASE, clock=swarm.clock, wall_clock=swarm.clock), view


async def step_until(lease: Lease, clock: FakeClock, condition: object, limit: float = 100.0) -> None:
    deadline = clock.now + limit
    while not (callable(condition) and condition()):
        assert clock.now < deadline, f"{lease.identity}: condition not met; last: {lease.last_reason}"
        clock.now += await lease.step()


async def test_first_candidate_waits_out_absent_labels_then_leads() -> None:
    clock = FakeClock(1000.0)
    swarm = Swarm(clock)
    lease, _ = make(swarm, "a")
    started = clock.now
    await step_until(lease, clock, lease.is_leader)
    assert clock.now - started >= LEASE
    assert rules.LeaseRecord.from_labels(swarm.labels).holder == "a"


async def test_standby_takes_over_about_a_lease_after_the_leader_goes_silent() -> None:
    clock = FakeClock(1000.0)
    swarm = Swarm(clock, labels=rules.released_labels())
    a, a_view = make(swarm, "a")
    b, _ = make(swarm, "b")
    await a.step()
    assert a.is_leader()
    assert (await b.step()) > 0 and not b.is_leader()
    a_view.cut = True  # the leader's node drops off the network
    silent_at = clock.now
    await step_until(b, clock, b.is_leader)
    assert not a.is_leader()
    assert LEASE <= clock.now - silent_at <= LEASE + b.timing.renew_every + 0.01


async def test_release_hands_over_without_waiting() -> None:
    clock = FakeClock(1000.0)
    swarm = Swarm(clock, labels=rules.released_labels())
    a, _ = make(swarm, "a")
    b, _ = make(swarm, "b")
    await a.step()
    await b.step()
    await a.release()
    assert not a.is_leader()
    await b.step()
    assert b.is_leader()


async def test_leader_keeps_the_lease_through_a_short_outage_and_loses_it_after_a_long_one() -> None:
    clock = FakeClock(1000.0)
    swarm = Swarm(clock, labels=rules.released_labels())
    a, view = make(swarm, "a")
    changes: list[bool] = []
    a._on_change = changes.append
    await a.step()
    view.cut = True
    clock.now += await a.step()  # one failed renewal
    view.cut = False
    await step_until(a, clock, lambda: swarm.writes >= 2)
    assert a.is_leader()
    view.cut = True
    await step_until(a, clock, lambda: not a.is_leader())
    assert changes == [True, False]


async def test_wait_leader_returns_once_the_lease_is_taken() -> None:
    clock = FakeClock(1000.0)
    swarm = Swarm(clock, labels=rules.released_labels())
    a, _ = make(swarm, "a")
    waiter = asyncio.create_task(a.wait_leader())
    await asyncio.sleep(0)
    assert not waiter.done()
    await a.step()
    await asyncio.wait_for(waiter, timeout=5)
    assert a.is_leader()


actions = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=2),  # which candidate
        st.sampled_from(["step", "step", "step", "cut", "heal", "slow", "wipe", "rollback", "release"]),
        st.floats(min_value=0.0, max_value=LEASE),  # time passing before the action
    ),
    min_size=5,
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(actions)
async def test_never_two_leaders_at_once(script: list[tuple[int, str, float]]) -> None:
    clock = FakeClock(1000.0)
    swarm = Swarm(clock)
    candidates = [make(swarm, name) for name in ("a", "b", "c")]
    for index, action, pause in script:
        lease, view = candidates[index]
        clock.now += pause
        if action == "step":
            await lease.step()
        elif action == "cut":
            view.cut = True
        elif action == "heal":
            view.cut = False
        elif action == "slow":
            view.write_latency = pause / 2
        elif action == "wipe":
            swarm.wipe()
        elif action == "rollback":
            swarm.rollback()
        elif action == "release":
            await lease.release()
        leaders = [lease.identity for lease, _ in candidates if lease.is_leader()]
        assert len(leaders) <= 1, f"two leaders at t={clock.now}: {leaders}"


async def test_leadership_is_exported_for_the_no_leader_and_two_leaders_alerts() -> None:
    registry = CollectorRegistry()
    clock = FakeClock(1000.0)
    swarm = Swarm(clock, labels=rules.released_labels())
    lease = Lease(SwarmView(swarm), identity="a", lease_seconds=LEASE, clock=clock, registry=registry)
    await lease.step()
    assert registry.get_sample_value("autoscaler_lease_leader") == 1
    await lease.release()
    assert registry.get_sample_value("autoscaler_lease_leader") == 0
    took = registry.get_sample_value("autoscaler_lease_transitions_total", {"change": "took"})
    lost = registry.get_sample_value("autoscaler_lease_transitions_total", {"change": "lost"})
    assert (took, lost) == (1, 1)


async def test_a_rollback_naming_a_former_holder_does_not_make_it_leader_at_once() -> None:
    clock = FakeClock(1000.0)
    swarm = Swarm(clock, labels=rules.released_labels())
    a, a_view = make(swarm, "a")
    b, _ = make(swarm, "b")
    await a.step()  # a leads
    a_view.cut = True
    await step_until(b, clock, b.is_leader)  # a went silent; b took over
    a_view.cut = False
    await step_until(a, clock, lambda: not a.is_leader())
    swarm.labels = rules.holder_labels("a", clock.now - 100, LEASE)  # rolled back to a's spec
    swarm.version += 1
    await a.step()
    assert b.is_leader()
    assert not a.is_leader(), "a re-took a lease b still holds"
