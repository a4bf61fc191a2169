"""Invariants of the failover tracker over random failure timelines (hypothesis)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from autoscaler.core.failover_tracker import (
    ConfirmationTimedOut,
    FailoverTracker,
    LostStatus,
    ManagedService,
    NodeView,
    ReplacementConfirmed,
    TaskView,
)
from autoscaler.core.policy import NodeFailure

T0 = 1_000.0
CONFIRM_WITHIN = 20
SERVICE = ManagedService("svc", "web", NodeFailure(confirm_within_seconds=CONFIRM_WITHIN))
MANAGED = {SERVICE.id: SERVICE}


@dataclass(frozen=True)
class Slot:
    """One slot on the failing node: when Swarm creates its replacement and when it runs (None: never)."""

    created_after: float | None
    running_after: float | None
    elsewhere: str


slots = st.builds(
    Slot,
    created_after=st.one_of(st.none(), st.floats(0.1, 40)),
    running_after=st.one_of(st.none(), st.floats(0.1, 20)),
    elsewhere=st.sampled_from(["n1", "n3"]),
)


def snapshot(
    now: float, plan: list[Slot], down_at: float, back_at: float
) -> tuple[list[NodeView], list[TaskView]]:
    down = down_at <= now < back_at
    nodes = [
        NodeView("n1", "h1", "ready", "active", T0),
        NodeView("n2", "h2", "down" if down else "ready", "active", down_at if now >= down_at else T0),
        NodeView("n3", "h3", "ready", "active", T0),
    ]
    tasks = []
    for slot, s in enumerate(plan, start=1):
        original_desired = "shutdown" if now >= down_at else "running"
        tasks.append(
            TaskView(f"old{slot}", SERVICE.id, "n2", slot, "running", original_desired, T0 - 50, T0 - 49)
        )
        if s.created_after is not None and now >= down_at + s.created_after:
            created = down_at + s.created_after
            runs = s.running_after is not None and now >= created + s.running_after
            state, at = ("running", created + (s.running_after or 0)) if runs else ("pending", created)
            tasks.append(TaskView(f"new{slot}", SERVICE.id, s.elsewhere, slot, state, "running", created, at))
    return nodes, tasks


@settings(max_examples=150, deadline=None)
@given(
    plan=st.lists(slots, min_size=0, max_size=5),
    down_after=st.floats(1, 10),
    back_after=st.floats(1, 80),
    step=st.floats(0.2, 3),
)
def test_tracker_invariants(plan: list[Slot], down_after: float, back_after: float, step: float) -> None:
    assume(back_after > 2 * step)  # the down state must be seen by at least one snapshot
    tracker = FailoverTracker()
    down_at, back_at = T0 + down_after, T0 + down_after + back_after
    timeouts = 0
    confirmed_ids: list[str] = []
    now = T0
    # The tracker sees the node back at the first snapshot after back_at (up to one step late)
    # and closes at the first snapshot a window after that: run a step past both.
    end = back_at + step + CONFIRM_WITHIN + step + 1
    while now <= end:
        nodes, tasks = snapshot(now, plan, down_at, back_at)
        for event in tracker.observe(now, nodes, tasks, MANAGED):
            if isinstance(event, ConfirmationTimedOut):
                timeouts += 1
                assert now >= event.failover.failed_at + CONFIRM_WITHIN
            if isinstance(event, ReplacementConfirmed):
                assert event.task.replacement_id is not None
                confirmed_ids.append(event.task.replacement_id)
                running = {t.id for t in tasks if t.running}
                assert event.task.replacement_id in running
        waiting = sum(len(f.waiting) for f in tracker.open_failovers)
        assert (tracker.hold_reason(SERVICE.id, now) is not None) == (waiting > 0)
        now += step

    assert len(confirmed_ids) == len(set(confirmed_ids)), "a replacement was claimed twice"
    assert timeouts <= 1, "onTimeout fired more than once for one service and failover"
    assert tracker.open_failovers == [], "the node has been back longer than the window"
    failovers = tracker.failovers()
    assert len(failovers) == 1
    failover = failovers[0]
    assert {t.slot for t in failover.lost} == set(range(1, len(plan) + 1))
    for lost in failover.lost:
        assert lost.status in (LostStatus.CONFIRMED, LostStatus.RECOVERED, LostStatus.UNCONFIRMED)
        if lost.status is LostStatus.CONFIRMED:
            assert lost.replacement_node != "n2"
            assert lost.confirmed_at is not None and lost.running_at is not None
            assert lost.running_at <= lost.confirmed_at
