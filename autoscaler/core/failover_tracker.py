"""Node failure tracking: which tasks a lost node took with it and whether they came back.

Swarm reschedules the tasks of a node that goes down or is drained; nothing in Swarm tells
anyone whether the replacements actually came up. ``FailoverTracker`` is the pure state
machine that does: it is fed complete snapshots of nodes and tasks (level-triggered, so a
missed event or a controller restart costs nothing but latency) and the time, and answers
with events for the I/O around it to act on (log, metrics, ``onTimeout`` actions).

Lifecycle of one ``Failover`` (one node, from failure to return):
- opened when a node is seen not ``ready`` or ``drain``ed; ``lost`` lists the tasks of
  managed services that were on it, one per (service, slot);
- each lost task waits for a replacement: a newer task of the same service and slot on
  another node; it is confirmed when that task is ``running`` (Swarm only reports a task
  with a HEALTHCHECK as running once healthy, see docs/failover.md, so running is healthy)
  and, as the policy's ``loadBalancer`` says, IPVS routes to it on the nodes and no longer to
  the lost task (``core.load_balancer``, on the ``LoadBalancerView`` the caller passes in);
- ``confirmWithinSeconds`` after the node failed, a service with tasks still waiting gets
  one ``ConfirmationTimedOut`` (its policy's ``onTimeout``), with Swarm's pending reasons;
- when the node is ``ready`` and active again the failover closes: tasks running again
  (on it or elsewhere) count as recovered, the rest as unconfirmed.
All times are Unix seconds: Swarm's own timestamps and the ``now`` the caller passes in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

from autoscaler.core.failover_model import (
    ConfirmationTimedOut,
    Failover,
    FailoverClosed,
    FailoverEvent,
    FailoverOpened,
    FailoverSettled,
    LostStatus,
    LostTask,
    ManagedService,
    NodeView,
    ReplacementConfirmed,
    TaskView,
    TimeoutRecord,
)
from autoscaler.core.load_balancer import LoadBalancerView, RoutingVerdict, routing_verdict

# A task in one of these states may still be (or become) running on its node.
LIVE_TASK_STATES = frozenset(
    {"new", "pending", "assigned", "accepted", "ready", "preparing", "starting", "running"}
)
# Swarm timestamps task shutdowns slightly before or after it updates the node: a drained
# node's tasks stopped within this margin of the node's change count as lost with it.
_DRAIN_SLACK_SECONDS = 5.0
_CLOSED_KEPT = 20
WAITING_FOR_LB = "waiting for the load balancer"

__all__ = [
    "LIVE_TASK_STATES",
    "ConfirmationTimedOut",
    "Failover",
    "FailoverClosed",
    "FailoverEvent",
    "FailoverOpened",
    "FailoverSettled",
    "FailoverTracker",
    "LoadBalancerView",
    "LostStatus",
    "LostTask",
    "ManagedService",
    "NodeView",
    "ReplacementConfirmed",
    "TaskView",
    "TimeoutRecord",
]


class FailoverTracker:
    """Feed ``observe`` complete snapshots; read ``hold_reason``, ``failovers()`` and the events."""

    def __init__(self) -> None:
        self._nodes: dict[str, NodeView] | None = None  # None until the first snapshot
        self._tasks: dict[str, TaskView] = {}
        self._open: dict[str, Failover] = {}
        self._closed: deque[Failover] = deque(maxlen=_CLOSED_KEPT)
        self._numbers = 0
        self._load_balancer: LoadBalancerView | None = None

    @property
    def open_failovers(self) -> list[Failover]:
        return list(self._open.values())

    def observe(
        self,
        now: float,
        nodes: Iterable[NodeView],
        tasks: Iterable[TaskView],
        managed: Mapping[str, ManagedService],
        load_balancer: LoadBalancerView | None = None,
    ) -> list[FailoverEvent]:
        """Advance on one snapshot: every node, every task of the managed services (by service id).

        ``load_balancer``: what the IPVS agents saw just after this snapshot was read (None: no
        agents configured); a replacement is confirmed once it is routed, per ``loadBalancer``.
        """
        node_map = {n.id: n for n in nodes}
        self._load_balancer = load_balancer
        task_list = [t for t in tasks if t.service_id in managed]
        events: list[FailoverEvent] = []
        first = self._nodes is None
        for node in node_map.values():
            failover = self._open.get(node.id)
            if node.failure is not None and failover is None:
                failover = self._open_failover(now, node, task_list, managed, found_at_start=first)
                events.append(FailoverOpened(failover))
            elif failover is not None and node.failure is not None:
                failover.kind, failover.back_at = node.failure, None
            elif failover is not None and failover.back_at is None:
                failover.back_at = now
        for node_id, failover in list(self._open.items()):
            if node_id not in node_map:
                failover.kind = "removed"
        for failover in list(self._open.values()):
            if failover.back_at is None:
                self._record_lost(failover, task_list, managed)
            events.extend(self._advance(now, failover, task_list, managed, list(node_map.values())))
            if failover.back_at is not None and failover.closed_at is None:
                events.extend(self._close_when_back(now, failover, managed))
        self._nodes = node_map
        self._tasks = {t.id: t for t in task_list}
        return events

    def hold_reason(self, service_id: str, now: float) -> str | None:
        """Why scale-down waits for ``service_id`` (its lost tasks are not all back), else None."""
        reasons = []
        for failover in self._open.values():
            lost = [t for t in failover.lost if t.service_id == service_id]
            waiting = [t for t in lost if t.status is LostStatus.WAITING]
            if waiting:
                since = now - failover.failed_at
                routing = sum(1 for t in waiting if (t.pending_reason or "").startswith(WAITING_FOR_LB))
                reasons.append(
                    f"failover: node {failover.hostname} {failover.kind} for {since:.0f}s, "
                    f"{len(waiting)} of {len(lost)} lost tasks not yet running elsewhere"
                    + (f" ({routing} running, {WAITING_FOR_LB})" if routing else "")
                )
        return "; ".join(reasons) or None

    def unconfirmed(self) -> dict[str, int]:
        """Waiting lost tasks per service name (every managed service that has any)."""
        counts: dict[str, int] = {}
        for failover in self._open.values():
            for task in failover.waiting:
                counts[task.service_name] = counts.get(task.service_name, 0) + 1
        return counts

    def failovers(self) -> list[Failover]:
        """Open failovers, then recently closed ones, newest first."""
        return sorted([*self._open.values(), *self._closed], key=lambda f: f.number, reverse=True)

    # -- transitions -----------------------------------------------------------------------------

    def _open_failover(
        self,
        now: float,
        node: NodeView,
        tasks: list[TaskView],
        managed: Mapping[str, ManagedService],
        *,
        found_at_start: bool,
    ) -> Failover:
        self._numbers += 1
        failed_at = node.updated_at if node.updated_at is not None and node.updated_at <= now else now
        failover = Failover(
            number=self._numbers,
            node_id=node.id,
            hostname=node.hostname,
            kind=node.failure or "down",
            failed_at=failed_at,
            detected_at=now,
            found_at_start=found_at_start,
        )
        self._record_lost(failover, tasks, managed)
        self._open[node.id] = failover
        return failover

    def _record_lost(
        self, failover: Failover, tasks: list[TaskView], managed: Mapping[str, ManagedService]
    ) -> None:
        """Add the lost tasks of services governed now but not when ``failover`` last looked.

        At opening that is every governed service; later, a policy added or a service
        relabelled during the failover, whose tasks on the node were lost just the same.
        """
        new = set(managed) - failover.services
        if not new:
            return
        failover.services |= new
        newest: dict[tuple[str, int | str], TaskView] = {}
        for task in self._lost_with(failover, tasks):
            key = (task.service_id, task.slot if task.slot is not None else task.id)
            if task.service_id in new and (key not in newest or task.created_at > newest[key].created_at):
                newest[key] = task
        for task in sorted(newest.values(), key=lambda t: (managed[t.service_id].name, t.slot or 0)):
            failover.lost.append(
                LostTask(
                    service_id=task.service_id,
                    service_name=managed[task.service_id].name,
                    slot=task.slot,
                    task_id=task.id,
                    created_at=task.created_at,
                    addresses=task.addresses,
                )
            )

    def _lost_with(self, failover: Failover, tasks: list[TaskView]) -> Iterable[TaskView]:
        """Tasks that were meant to run on the failover's node when it failed.

        The previous snapshot says so directly. Without one (first snapshot, or Swarm acted
        between two snapshots), a task still live on the node counts (a dead node's tasks keep
        their last reported state), and on a drained node so does one stopped around the drain
        (a live node stops its tasks quickly; a dead one cannot have stopped them).
        """
        drain_from = failover.failed_at - _DRAIN_SLACK_SECONDS if failover.kind == "drain" else None
        for task in tasks:
            if task.node_id != failover.node_id:
                continue
            before = self._tasks.get(task.id)
            if (
                (before is not None and before.desired_state == "running")
                or task.desired_state == "running"
                or task.state in LIVE_TASK_STATES
                or (drain_from is not None and task.status_at >= drain_from)
            ):
                yield task

    def _advance(
        self,
        now: float,
        failover: Failover,
        tasks: list[TaskView],
        managed: Mapping[str, ManagedService],
        nodes: list[NodeView],
    ) -> list[FailoverEvent]:
        events: list[FailoverEvent] = []
        claimed = {t.replacement_id for t in failover.lost if t.replacement_id is not None}
        on_node = failover.node_id
        for lost in failover.waiting:
            if lost.service_id not in managed:
                lost.status = LostStatus.DROPPED
                lost.pending_reason = "service removed or no longer governed by a policy"
                continue
            candidates = sorted(
                (
                    t
                    for t in tasks
                    if t.service_id == lost.service_id
                    and (lost.slot is None or t.slot == lost.slot)
                    and t.id not in claimed
                    and (
                        (t.node_id != failover.node_id and t.created_at > lost.created_at)
                        # Once the node is back, a task running on it again (even the lost one) counts.
                        or (failover.back_at is not None and t.node_id == failover.node_id)
                    )
                ),
                key=lambda t: t.created_at,
            )
            # A replacement elsewhere is what Swarm made for the loss; prefer it to one back on the node.
            running = sorted((t for t in candidates if t.running), key=lambda t: t.node_id == on_node)
            verdict = self._routing(lost, running[0], tasks, managed, nodes) if running else None
            if running and verdict is not None and not verdict.confirmed:
                lost.pending_reason = (
                    f"{WAITING_FOR_LB}: task {running[0].id[:12]} is running and healthy, {verdict.reason}"
                )
            elif running and verdict is not None:
                replacement = running[0]
                claimed.add(replacement.id)
                back = replacement.node_id == failover.node_id
                lost.status = LostStatus.RECOVERED if back else LostStatus.CONFIRMED
                lost.replacement_id = replacement.id
                lost.replacement_node = replacement.node_id
                lost.replacement_created_at = replacement.created_at
                lost.running_at = replacement.status_at
                lost.confirmed_at = now
                lost.pending_reason = None
                lost.confirm_reason = (
                    f"confirmed: running, healthy, and {verdict.reason}"
                    if verdict.checked
                    else f"confirmed: running and healthy ({verdict.reason})"
                )
                events.append(ReplacementConfirmed(failover, lost))
            elif candidates := [t for t in candidates if t.id != lost.task_id]:
                newest = candidates[-1]
                lost.replacement_created_at = candidates[0].created_at
                lost.pending_reason = newest.why_not_running()
            else:
                lost.pending_reason = "Swarm has not created a replacement task yet"
        events.extend(self._timeouts(now, failover, managed))
        if failover.settled_at is None and not failover.waiting:
            failover.settled_at = now
            events.append(FailoverSettled(failover))
        if failover.kind == "removed" and failover.settled_at is not None:
            events.extend(self._close(now, failover, f"node {failover.hostname} was removed from the swarm"))
        return events

    def _routing(
        self,
        lost: LostTask,
        replacement: TaskView,
        tasks: list[TaskView],
        managed: Mapping[str, ManagedService],
        nodes: list[NodeView],
    ) -> RoutingVerdict:
        service = managed[lost.service_id]
        same_service = [t for t in tasks if t.service_id == lost.service_id]
        recorded = lost.addresses or next((t.addresses for t in same_service if t.id == lost.task_id), ())
        # Swarm may hand a freed address to a new task: an address a live task holds is not the lost one's.
        live = {a for t in same_service if t.running and t.id != lost.task_id for a in t.addresses}
        return routing_verdict(
            service.node_failure.load_balancer,
            service=service.name,
            load_balanced=service.load_balanced,
            replacement=replacement.addresses,
            lost=[a for a in recorded if a not in live],
            nodes=nodes,
            view=self._load_balancer,
        )

    def _timeouts(
        self, now: float, failover: Failover, managed: Mapping[str, ManagedService]
    ) -> list[FailoverEvent]:
        events: list[FailoverEvent] = []
        fired = {r.service_id for r in failover.timeouts}
        by_service: dict[str, list[LostTask]] = {}
        for lost in failover.waiting:
            by_service.setdefault(lost.service_id, []).append(lost)
        for service_id, waiting in by_service.items():
            service = managed[service_id]
            deadline = failover.failed_at + service.node_failure.confirm_within_seconds
            if service_id in fired or now < deadline:
                continue
            for lost in waiting:
                lost.timed_out = True
            record = TimeoutRecord(
                service_id=service_id,
                service_name=service.name,
                action=service.node_failure.on_timeout,
                at=now,
                waiting=len(waiting),
                reasons=tuple(sorted({t.pending_reason for t in waiting if t.pending_reason})),
            )
            failover.timeouts.append(record)
            events.append(ConfirmationTimedOut(failover, service, record))
        return events

    def _close_when_back(
        self, now: float, failover: Failover, managed: Mapping[str, ManagedService]
    ) -> list[FailoverEvent]:
        """Close once nothing waits, or when the waiting services' confirm window has passed since
        the node came back (Swarm needs a moment to restart tasks there); the rest is unconfirmed."""
        assert failover.back_at is not None
        waiting = failover.waiting
        if waiting:
            windows = [
                managed[t.service_id].node_failure.confirm_within_seconds
                for t in waiting
                if t.service_id in managed
            ]
            if now < failover.back_at + max(windows, default=0):
                return []
            for lost in waiting:
                lost.status = LostStatus.UNCONFIRMED
            reason = f"node {failover.hostname} back, {len(waiting)} lost task(s) never ran again"
        else:
            reason = f"node {failover.hostname} is ready and active again"
        return self._close(now, failover, reason)

    def _close(self, now: float, failover: Failover, reason: str) -> list[FailoverEvent]:
        failover.closed_at = now
        failover.close_reason = reason
        del self._open[failover.node_id]
        self._closed.append(failover)
        events: list[FailoverEvent] = []
        if failover.settled_at is None:
            failover.settled_at = now
            events.append(FailoverSettled(failover))
        events.append(FailoverClosed(failover))
        return events
