"""Hot reload of policy files, asked for every tick and on SIGHUP.

The store re-reads only files whose mtime, size or content changed, so asking every tick
is cheap, and it keeps the last good version of a broken file. This watcher makes what
happened visible (log, ``autoscaler_policy_load_errors``, ``/decisions``) so a typo never
fails silently, and logs a problem again only when the set of problems changes.
"""

from __future__ import annotations

import logging

from autoscaler.core.policy import ScalingPolicy
from autoscaler.observability.metrics import ControllerMetrics
from autoscaler.reconciler.ports import PolicyCatalog

log = logging.getLogger("autoscaler.policies")


class PolicyWatcher:
    def __init__(self, catalog: PolicyCatalog, metrics: ControllerMetrics) -> None:
        self.catalog = catalog
        self.metrics = metrics
        self.problems: list[str] = []
        # Where each problem is, without its message: what HTTP answers show (a message may
        # quote the file, and /decisions must not serve file contents).
        self.problem_locations: list[str] = []
        self.loaded = False

    def current(self) -> list[ScalingPolicy]:
        return [loaded.policy for loaded in self.catalog.policies]

    def reload(self) -> None:
        try:
            result = self.catalog.reload()
            problems = [str(p) for p in result.problems]
            locations = [p.location() for p in result.problems]
            changes = {"added": result.added, "changed": result.changed, "removed": result.removed}
        except Exception as exc:  # the store reports rather than raises; never let it kill the loop
            problems = [f"policy reload failed: {type(exc).__name__}: {exc}"]
            locations = ["policy reload failed (see the controller's log)"]
            changes = {}
        first = not self.loaded
        self.loaded = True
        if problems != self.problems:
            for problem in problems:
                log.error(
                    "policy problem (last good version kept): %s", problem, extra={"event": "policy_error"}
                )
            if not problems and not first:
                log.info("policy problems resolved", extra={"event": "policy_ok"})
        self.problems = problems
        self.problem_locations = locations
        self.metrics.policy_load_errors.set(len(problems))
        self.metrics.policies.set(len(self.catalog.policies))
        if first or any(changes.values()):
            summary = ", ".join(f"{kind}: {', '.join(names)}" for kind, names in changes.items() if names)
            log.info(
                "policies reloaded (%s); in force: %s",
                summary or "no change",
                ", ".join(sorted(p.name for p in self.current())) or "none",
                extra={"event": "policies_loaded", **changes},
            )
