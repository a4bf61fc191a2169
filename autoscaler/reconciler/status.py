"""Health, readiness and the /decisions document, read from a running ``Reconciler``."""

from __future__ import annotations

from typing import Any

from autoscaler.reconciler.loop import Reconciler

# Liveness tolerates a few slow passes (a sluggish daemon) before asking for a restart.
MISSED_TICKS_BEFORE_DEAD = 3
LIVENESS_SLACK_SECONDS = 30.0


class ReconcilerStatus:
    def __init__(self, reconciler: Reconciler) -> None:
        self.reconciler = reconciler
        self.started_at = reconciler.clock()

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        r = self.reconciler
        now = r.clock()
        allowed = MISSED_TICKS_BEFORE_DEAD * r.interval + LIVENESS_SLACK_SECONDS
        since = r.status.last_pass_at if r.status.last_pass_at is not None else self.started_at
        age = now - since
        return age <= allowed, {
            "seconds_since_last_pass": round(age, 3),
            "allowed_seconds": allowed,
            "passes": r.status.passes,
        }

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        r = self.reconciler
        checks = {
            "policies_loaded": r.policies.loaded,
            "pass_completed": r.status.passes > 0,
            "docker_reachable": r.status.target_reachable,
        }
        details: dict[str, Any] = {
            "checks": checks,
            "policies": len(r.policies.current()),
            "label_policies": len(r.labels.in_force()),
        }
        if r.status.target_error:
            details["docker_error"] = r.status.target_error
        return all(checks.values()), details

    def decisions(self) -> dict[str, Any]:
        r = self.reconciler
        return {
            "generated_at": r.clock(),
            "last_pass_at": r.status.last_pass_at,
            "dry_run": r.dry_run,
            "leader": r.leadership.is_leader() if r.leadership is not None else True,
            "services": {name: record.to_json() for name, record in sorted(r.status.records.items())},
            # Where, not what: the messages quote the files; they are in the log and in
            # `swarm-autoscaler validate`.
            "policy_problems": list(r.policies.problem_locations),
            "label_problems": {name: list(p) for name, p in sorted(r.labels.problems.items())},
            "shadowed": list(r.status.shadowed),
            "conflicts": list(r.status.conflicts),
            "idle_policies": list(r.status.idle_policies),
            "docker_error": r.status.target_error,
            "failovers": r.failover.failovers() if r.failover is not None else [],
        }
