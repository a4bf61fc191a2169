"""How a failover reads to people: the log line and the ``failovers`` section of /decisions.

Times are reported relative to ``failed_at`` (Swarm's time of the node change), so one
line shows Swarm's rescheduling, Swarm's "running" and our confirmation side by side.
"""

from __future__ import annotations

from typing import Any

from autoscaler.core.failover_tracker import Failover, FailoverTracker, LostStatus


def failover_summary(failover: Failover) -> str:
    """One line with the measured times, for the log."""
    f = failover
    counts = {s: sum(1 for t in f.lost if t.status is s) for s in LostStatus}
    parts = [
        f"failover #{f.number}: node {f.hostname} {f.kind}",
        f"seen {f.detected_at - f.failed_at:.1f}s after Swarm marked it",
        ", ".join(f"{n} {s.value}" for s, n in counts.items() if n) or "no managed tasks on it",
    ]
    running = [t.running_at - f.failed_at for t in f.lost if t.running_at is not None]
    confirmed = [t.confirmed_at - f.failed_at for t in f.lost if t.confirmed_at is not None]
    lags = [t.confirmed_at - t.running_at for t in f.lost if t.confirmed_at and t.running_at]
    if running and confirmed:
        parts.append(
            f"replacements running by +{max(running):.1f}s, confirmed by +{max(confirmed):.1f}s "
            f"(at most {max(lags):.1f}s after Swarm had them running)"
        )
    checks: dict[str, int] = {}
    for t in f.lost:
        if t.confirm_reason is not None:
            checks[t.confirm_reason] = checks.get(t.confirm_reason, 0) + 1
    parts.extend(f"{n} {why}" for why, n in checks.items())
    parts.extend(f"onTimeout {r.action.value} for {r.service_name}: {r.outcome}" for r in f.timeouts)
    if f.closed_at is not None:
        parts.append(f"closed at +{f.closed_at - f.failed_at:.1f}s: {f.close_reason}")
    return "; ".join(parts)


def failover_json(failover: Failover, now: float) -> dict[str, Any]:
    f = failover

    def after(at: float | None) -> float | None:
        return None if at is None else round(at - f.failed_at, 3)

    return {
        "number": f.number,
        "node": f.hostname,
        "node_id": f.node_id,
        "kind": f.kind,
        "open": f.closed_at is None,
        "failed_at": f.failed_at,
        "age_seconds": round(now - f.failed_at, 3),
        "found_at_start": f.found_at_start,
        "detected_after": after(f.detected_at),
        "settled_after": after(f.settled_at),
        "closed_after": after(f.closed_at),
        "close_reason": f.close_reason,
        "tasks": [
            {
                "service": t.service_name,
                "slot": t.slot,
                "lost_task": t.task_id,
                "status": t.status.value,
                "replacement": t.replacement_id,
                "replacement_node": t.replacement_node,
                "rescheduled_after": after(t.replacement_created_at),
                "running_after": after(t.running_at),
                "confirmed_after": after(t.confirmed_at),
                "pending_reason": t.pending_reason,
                "confirm_reason": t.confirm_reason,
                "timed_out": t.timed_out,
            }
            for t in f.lost
        ],
        "timeouts": [
            {
                "service": r.service_name,
                "action": r.action.value,
                "after": after(r.at),
                "waiting": r.waiting,
                "reasons": list(r.reasons),
                "outcome": r.outcome,
            }
            for r in f.timeouts
        ],
    }


def failovers_json(tracker: FailoverTracker, now: float) -> list[dict[str, Any]]:
    """The ``failovers`` section of /decisions, newest first (open and recently closed)."""
    return [failover_json(f, now) for f in tracker.failovers()]
