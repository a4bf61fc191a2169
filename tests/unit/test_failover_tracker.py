"""The failover state machine, driven by synthetic snapshots and a fake clock."""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

from autoscaler.core.failover_report import failover_summary, failovers_json
from autoscaler.core.failover_tracker import (
    ConfirmationTimedOut,
    FailoverClosed,
    FailoverEvent,
    FailoverOpened,
    FailoverSettled,
    FailoverTracker,
    LostStatus,
    ManagedService,
    NodeView,
    ReplacementConfirmed,
    TaskView,
)
from autoscaler.core.policy import NodeFailure, OnTimeout

T0 = 1_700_000_000.0
WEB = ManagedService(id="svc-web", name="web", node_failure=NodeFailure(confirm_within_seconds=30))
API = ManagedService(
    id="svc-api",
    name="api",
    node_failure=NodeFailure(confirm_within_seconds=10, on_timeout=OnTimeout.SCALE_UP, scale_up_by=2),
)
MANAGED = {WEB.id: WEB, API.id: API}


def node(n: int, state: str = "ready", availability: str = "active", at: float = T0) -> NodeView:
    return NodeView(id=f"n{n}", hostname=f"host{n}", state=state, availability=availability, updated_at=at)


def cluster(**overrides: NodeView) -> list[NodeView]:
    nodes = {f"n{i}": node(i) for i in (1, 2, 3)}
    nodes.update(overrides)
    return list(nodes.values())


def task(
    tid: str,
    service: ManagedService | str,
    node_id: str,
    slot: int | None,
    *,
    state: str = "running",
    desired: str = "running",
    created: float = T0 - 100,
    status_at: float | None = None,
    error: str | None = None,
) -> TaskView:
    return TaskView(
        id=tid,
        service_id=service if isinstance(service, str) else service.id,
        node_id=node_id,
        slot=slot,
        state=state,
        desired_state=desired,
        created_at=created,
        status_at=created + 1 if status_at is None else status_at,
        error=error,
    )


def steady() -> list[TaskView]:
    """web: slots 1-3 on n1, n2, n3; api: slot 1 on n2; an unmanaged service on n2."""
    return [
        task("w1", WEB, "n1", 1),
        task("w2", WEB, "n2", 2),
        task("w3", WEB, "n3", 3),
        task("a1", API, "n2", 1),
        task("x1", "svc-other", "n2", 1),
    ]


E = TypeVar("E")


def of_type(events: list[FailoverEvent], kind: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, kind)]


def node2_lost(tracker: FailoverTracker, tasks: list[TaskView], *, down_at: float = T0 + 3) -> None:
    """Steady first snapshot, then node 2 down at ``down_at`` with Swarm's orphaned view of its tasks."""
    tracker.observe(T0, cluster(), tasks, MANAGED)
    on_dead = [replace(t, desired_state="shutdown") if t.node_id == "n2" else t for t in tasks]
    tracker.observe(down_at + 0.5, cluster(n2=node(2, "down", at=down_at)), on_dead, MANAGED)


def test_node_down_opens_a_failover_with_the_managed_tasks_that_were_on_it() -> None:
    tracker = FailoverTracker()
    tracker.observe(T0, cluster(), steady(), MANAGED)
    events = tracker.observe(T0 + 4, cluster(n2=node(2, "down", at=T0 + 3)), steady(), MANAGED)

    opened = of_type(events, FailoverOpened)
    assert len(opened) == 1
    failover = opened[0].failover
    assert (failover.hostname, failover.kind, failover.failed_at, failover.detected_at) == (
        "host2",
        "down",
        T0 + 3,
        T0 + 4,
    )
    expected = {(t.service_id, t.slot) for t in steady() if t.node_id == "n2" and t.service_id in MANAGED}
    assert {(t.service_id, t.slot) for t in failover.lost} == expected
    assert all(t.status is LostStatus.WAITING for t in failover.lost)
    assert not failover.found_at_start


def test_replacement_is_confirmed_when_running_on_another_node_with_swarm_and_our_times() -> None:
    tracker = FailoverTracker()
    node2_lost(tracker, steady())
    dead = cluster(n2=node(2, "down", at=T0 + 3))
    created, running_at = T0 + 4, T0 + 6
    pending = task("w2b", WEB, "n3", 2, state="starting", created=created, status_at=created)
    events = tracker.observe(T0 + 5, dead, [*steady(), pending], MANAGED)
    assert not of_type(events, ReplacementConfirmed)
    web_lost = next(t for t in tracker.open_failovers[0].lost if t.service_id == WEB.id)
    assert web_lost.pending_reason is not None and "starting" in web_lost.pending_reason

    running = replace(pending, state="running", status_at=running_at)
    events = tracker.observe(T0 + 6.2, dead, [*steady(), running], MANAGED)
    confirmed = of_type(events, ReplacementConfirmed)
    assert [c.task.slot for c in confirmed] == [2]
    lost = confirmed[0].task
    assert (lost.replacement_id, lost.replacement_node) == ("w2b", "n3")
    assert (lost.replacement_created_at, lost.running_at, lost.confirmed_at) == (
        created,
        running_at,
        T0 + 6.2,
    )
    assert tracker.hold_reason(WEB.id, T0 + 6.2) is None
    assert tracker.hold_reason(API.id, T0 + 6.2) is not None  # api's task is still waiting


def test_older_tasks_and_tasks_left_on_the_dead_node_are_not_replacements() -> None:
    tracker = FailoverTracker()
    history = task("w2-old", WEB, "n3", 2, state="shutdown", desired="shutdown", created=T0 - 500)
    old_running_elsewhere = task("w2-older", WEB, "n1", 2, created=T0 - 900)
    node2_lost(tracker, [*steady(), history, old_running_elsewhere])
    same_node = task("w2-again", WEB, "n2", 2, created=T0 + 5)
    events = tracker.observe(
        T0 + 6,
        cluster(n2=node(2, "down", at=T0 + 3)),
        [*steady(), history, old_running_elsewhere, same_node],
        MANAGED,
    )
    assert not of_type(events, ReplacementConfirmed)


def test_scale_down_is_held_while_tasks_wait_and_the_reason_says_why() -> None:
    tracker = FailoverTracker()
    node2_lost(tracker, steady())
    reason = tracker.hold_reason(WEB.id, T0 + 13)
    assert reason is not None
    assert "host2" in reason and "down for 10s" in reason and "1 of 1" in reason
    assert tracker.hold_reason("svc-other", T0 + 13) is None
    assert tracker.unconfirmed() == {"web": 1, "api": 1}


def test_timeout_fires_once_per_service_at_its_own_deadline_with_swarms_reasons() -> None:
    tracker = FailoverTracker()
    down_at = T0 + 3
    node2_lost(tracker, steady(), down_at=down_at)
    dead = cluster(n2=node(2, "down", at=down_at))
    err = "no suitable node (scheduling constraints not satisfied on 2 nodes)"
    stuck = task("a1b", API, "", 1, state="pending", created=down_at + 1, error=err)
    tasks = [*steady(), stuck]

    just_before = down_at + API.node_failure.confirm_within_seconds - 0.1
    assert not of_type(tracker.observe(just_before, dead, tasks, MANAGED), ConfirmationTimedOut)
    at_deadline = down_at + API.node_failure.confirm_within_seconds
    fired = of_type(tracker.observe(at_deadline, dead, tasks, MANAGED), ConfirmationTimedOut)
    assert [(f.service.name, f.record.action, f.record.waiting) for f in fired] == [
        ("api", OnTimeout.SCALE_UP, 1)
    ]
    assert any(err in reason for reason in fired[0].record.reasons)
    assert not of_type(tracker.observe(at_deadline + 1, dead, tasks, MANAGED), ConfirmationTimedOut)

    web_deadline = down_at + WEB.node_failure.confirm_within_seconds
    fired = of_type(tracker.observe(web_deadline, dead, tasks, MANAGED), ConfirmationTimedOut)
    assert [(f.service.name, f.record.action) for f in fired] == [("web", OnTimeout.ALERT)]
    assert all(t.timed_out for t in tracker.open_failovers[0].lost)


def test_a_late_replacement_is_still_confirmed_after_the_timeout() -> None:
    tracker = FailoverTracker()
    node2_lost(tracker, steady())
    dead = cluster(n2=node(2, "down", at=T0 + 3))
    late = T0 + 3 + WEB.node_failure.confirm_within_seconds + 5
    tracker.observe(late - 1, dead, steady(), MANAGED)
    replacement = task("w2b", WEB, "n1", 2, created=late - 2, status_at=late - 1)
    events = tracker.observe(late, dead, [*steady(), replacement], MANAGED)
    confirmed = of_type(events, ReplacementConfirmed)
    assert len(confirmed) == 1 and confirmed[0].task.timed_out


def test_settled_once_every_lost_task_is_confirmed() -> None:
    tracker = FailoverTracker()
    node2_lost(tracker, steady())
    dead = cluster(n2=node(2, "down", at=T0 + 3))
    replacements = [task("w2b", WEB, "n1", 2, created=T0 + 4), task("a1b", API, "n3", 1, created=T0 + 4)]
    events = tracker.observe(T0 + 7, dead, [*steady(), *replacements], MANAGED)
    assert len(of_type(events, ReplacementConfirmed)) == 2
    assert len(of_type(events, FailoverSettled)) == 1
    assert not of_type(tracker.observe(T0 + 8, dead, [*steady(), *replacements], MANAGED), FailoverSettled)
    line = failover_summary(tracker.open_failovers[0])
    assert "host2" in line and "2 confirmed" in line


def test_node_back_tasks_running_on_it_again_are_recovered_and_the_rest_waits_its_window() -> None:
    tracker = FailoverTracker()
    node2_lost(tracker, steady())
    # The link came back: web's old task is running again on n2, api's task is gone.
    back = [t for t in steady() if t.id != "a1"]
    back_at = T0 + 9
    events = tracker.observe(back_at, cluster(n2=node(2, at=T0 + 8.5)), back, MANAGED)
    assert not of_type(events, FailoverClosed)
    statuses = {t.service_name: t.status for t in tracker.open_failovers[0].lost}
    assert statuses == {"web": LostStatus.RECOVERED, "api": LostStatus.WAITING}
    assert tracker.hold_reason(API.id, back_at) is not None

    window_end = back_at + API.node_failure.confirm_within_seconds
    assert not of_type(tracker.observe(window_end - 0.1, cluster(), back, MANAGED), FailoverClosed)
    events = tracker.observe(window_end, cluster(), back, MANAGED)
    closed = of_type(events, FailoverClosed)
    assert len(closed) == 1 and len(of_type(events, FailoverSettled)) == 1
    statuses = {t.service_name: t.status for t in closed[0].failover.lost}
    assert statuses == {"web": LostStatus.RECOVERED, "api": LostStatus.UNCONFIRMED}
    assert tracker.open_failovers == [] and tracker.unconfirmed() == {}
    assert tracker.hold_reason(API.id, window_end) is None
    report = failovers_json(tracker, window_end)
    assert [(r["node"], r["open"]) for r in report] == [("host2", False)]


def test_node_back_closes_once_swarm_restarts_the_pending_task_on_it() -> None:
    tracker = FailoverTracker()
    node2_lost(tracker, steady())
    pending = task("a1b", API, "", 1, state="pending", created=T0 + 4, error="no suitable node")
    without_api = [t for t in steady() if t.id != "a1"]
    replacement = task("w2b", WEB, "n1", 2, created=T0 + 4)
    tracker.observe(T0 + 9, cluster(), [*without_api, pending, replacement], MANAGED)
    assert tracker.open_failovers, "api's task is not running yet: the failover stays open"
    started = replace(pending, node_id="n2", state="running", status_at=T0 + 10)
    events = tracker.observe(T0 + 11, cluster(), [*without_api, started, replacement], MANAGED)
    closed = of_type(events, FailoverClosed)[0].failover
    statuses = {t.service_name: t.status for t in closed.lost}
    assert statuses == {"web": LostStatus.CONFIRMED, "api": LostStatus.RECOVERED}


def test_node_failing_again_while_recovering_keeps_one_failover() -> None:
    tracker = FailoverTracker()
    node2_lost(tracker, steady())
    gone = [t for t in steady() if t.node_id != "n2"]
    tracker.observe(T0 + 9, cluster(), gone, MANAGED)
    events = tracker.observe(T0 + 10, cluster(n2=node(2, "down", at=T0 + 9.5)), gone, MANAGED)
    assert not of_type(events, FailoverOpened)
    assert len(tracker.open_failovers) == 1 and tracker.open_failovers[0].back_at is None


def test_replacement_running_in_the_snapshot_where_the_node_returns_counts_as_confirmed() -> None:
    tracker = FailoverTracker()
    node2_lost(tracker, steady())
    replacements = [task("w2b", WEB, "n1", 2, created=T0 + 4), task("a1b", API, "n3", 1, created=T0 + 4)]
    events = tracker.observe(T0 + 9, cluster(), [*steady(), *replacements], MANAGED)
    closed = of_type(events, FailoverClosed)[0].failover
    assert {t.status for t in closed.lost} == {LostStatus.CONFIRMED}


def test_drain_counts_tasks_swarm_shut_down_between_two_snapshots() -> None:
    tracker = FailoverTracker()
    tracker.observe(T0, cluster(), steady(), MANAGED)
    drained_at = T0 + 2
    shut = [
        replace(t, state="shutdown", desired_state="shutdown", status_at=drained_at + 0.3)
        if t.node_id == "n2"
        else t
        for t in steady()
    ]
    events = tracker.observe(T0 + 3, cluster(n2=node(2, availability="drain", at=drained_at)), shut, MANAGED)
    failover = of_type(events, FailoverOpened)[0].failover
    assert failover.kind == "drain"
    assert {t.task_id for t in failover.lost} == {"w2", "a1"}


def test_restart_mid_failover_rebuilds_from_task_history() -> None:
    down_at = T0 - 20
    orphaned = task("w2", WEB, "n2", 2, desired="shutdown")  # last state the dead node reported
    replacement = task("w2b", WEB, "n1", 2, created=down_at + 4, status_at=down_at + 6)
    stale = task("w2-ancient", WEB, "n2", 2, state="shutdown", desired="shutdown", created=T0 - 5000)
    others = [t for t in steady() if t.node_id != "n2"]
    tracker = FailoverTracker()
    events = tracker.observe(
        T0, cluster(n2=node(2, "down", at=down_at)), [*others, orphaned, stale, replacement], MANAGED
    )
    failover = of_type(events, FailoverOpened)[0].failover
    assert failover.found_at_start and failover.failed_at == down_at
    assert [t.task_id for t in failover.lost] == ["w2"]
    confirmed = of_type(events, ReplacementConfirmed)
    assert [c.task.running_at for c in confirmed] == [replacement.status_at]


def test_removed_service_drops_its_lost_tasks() -> None:
    tracker = FailoverTracker()
    node2_lost(tracker, steady())
    only_web = {WEB.id: WEB}
    replacement = task("w2b", WEB, "n1", 2, created=T0 + 4)
    events = tracker.observe(
        T0 + 8, cluster(n2=node(2, "down", at=T0 + 3)), [*steady(), replacement], only_web
    )
    statuses = {t.service_name: t.status for t in tracker.open_failovers[0].lost}
    assert statuses == {"web": LostStatus.CONFIRMED, "api": LostStatus.DROPPED}
    assert len(of_type(events, FailoverSettled)) == 1


def test_tasks_without_slots_are_matched_one_replacement_each() -> None:
    tracker = FailoverTracker()
    lost = [task("g1", WEB, "n2", None), task("g2", WEB, "n2", None)]
    node2_lost(tracker, lost)
    one = task("g3", WEB, "n3", None, created=T0 + 4)
    events = tracker.observe(T0 + 6, cluster(n2=node(2, "down", at=T0 + 3)), [*lost, one], MANAGED)
    assert len(of_type(events, ReplacementConfirmed)) == 1
    assert tracker.unconfirmed() == {"web": 1}


def test_node_removed_from_the_swarm_closes_once_settled() -> None:
    tracker = FailoverTracker()
    node2_lost(tracker, steady())
    without_n2 = [node(1), node(3)]
    tracker.observe(T0 + 6, without_n2, steady(), MANAGED)
    assert tracker.open_failovers[0].kind == "removed"
    replacements = [task("w2b", WEB, "n1", 2, created=T0 + 4), task("a1b", API, "n3", 1, created=T0 + 4)]
    events = tracker.observe(T0 + 7, without_n2, [*steady(), *replacements], MANAGED)
    assert len(of_type(events, FailoverClosed)) == 1


def test_paused_node_and_unmanaged_tasks_open_nothing() -> None:
    tracker = FailoverTracker()
    tracker.observe(T0, cluster(), steady(), MANAGED)
    assert tracker.observe(T0 + 1, cluster(n2=node(2, availability="pause")), steady(), MANAGED) == []
    only_other = [task("x1", "svc-other", "n3", 1)]
    events = tracker.observe(T0 + 2, cluster(n3=node(3, "down", at=T0 + 1.5)), only_other, MANAGED)
    assert of_type(events, FailoverOpened)[0].failover.lost == []
    assert len(of_type(events, FailoverSettled)) == 1


def test_node_state_change_while_open_updates_the_kind_without_reopening() -> None:
    tracker = FailoverTracker()
    node2_lost(tracker, steady())
    events = tracker.observe(T0 + 6, cluster(n2=node(2, "unknown", at=T0 + 5)), steady(), MANAGED)
    assert not of_type(events, FailoverOpened)
    assert tracker.open_failovers[0].kind == "unknown"


def test_a_service_governed_during_the_failover_has_its_lost_tasks_recorded_too() -> None:
    tracker = FailoverTracker()
    only_web = {WEB.id: WEB}
    tracker.observe(T0, cluster(), steady(), only_web)
    on_dead = [replace(t, desired_state="shutdown") if t.node_id == "n2" else t for t in steady()]
    tracker.observe(T0 + 4, cluster(n2=node(2, "down", at=T0 + 3)), on_dead, only_web)
    assert {t.service_name for t in tracker.open_failovers[0].lost} == {"web"}
    tracker.observe(T0 + 5, cluster(n2=node(2, "down", at=T0 + 3)), on_dead, MANAGED)
    lost = {(t.service_name, t.task_id) for t in tracker.open_failovers[0].lost}
    assert lost == {("web", "w2"), ("api", "a1")}


def test_tasks_stopped_just_before_a_node_died_are_not_lost_with_it() -> None:
    down_at = T0 - 20
    scaled_away = task("w9", WEB, "n2", 9, state="shutdown", desired="shutdown", status_at=down_at - 2)
    orphaned = task("w2", WEB, "n2", 2, desired="shutdown")
    tracker = FailoverTracker()
    events = tracker.observe(T0, cluster(n2=node(2, "down", at=down_at)), [scaled_away, orphaned], MANAGED)
    assert [t.task_id for t in of_type(events, FailoverOpened)[0].failover.lost] == ["w2"]
