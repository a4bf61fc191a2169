"""Health, readiness and the /decisions document, read from a running ``Reconciler``."""

from __future__ import annotations

from typing import Any

from autoscaler.reconciler.loop import Reconciler

# Alive while a pass completed within this many intervals. A pass that cannot list the
# services (Docker refuses, errors) still completes; one that waits on a daemon that
# accepted the connection and never answers (a hung or SIGSTOPped dockerd) does not, and
# after this many intervals Swarm's HEALTHCHECK sees 503 and replaces the controller.
DEFAULT_LIVENESS_PASSES = 3
# Below this a GC pause or a busy node would read as a stuck loop at 1 s intervals.
MIN_LIVENESS_SECONDS = 10.0


class ReconcilerStatus:
    def __init__(self, reconciler: Reconciler, *, liveness_passes: int = DEFAULT_LIVENESS_PASSES) -> None:
        self.reconciler = reconciler
        self.started_at = reconciler.clock()
        self.allowed_seconds = max(liveness_passes * reconciler.interval, MIN_LIVENESS_SECONDS)

    def _since_last_pass(self) -> float:
        r = self.reconciler
        since = r.status.last_pass_at if r.status.last_pass_at is not None else self.started_at
        return r.clock() - since

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        age = self._since_last_pass()
        return age <= self.allowed_seconds, {
            "seconds_since_last_pass": round(age, 3),
            "allowed_seconds": self.allowed_seconds,
            "passes": self.reconciler.status.passes,
        }

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        r = self.reconciler
        checks = {
            "policies_loaded": r.policies.loaded,
            "pass_completed": r.status.passes > 0,
            "pass_recent": self._since_last_pass() <= self.allowed_seconds,
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
