"""Fallback when metrics keep failing (KEDA ``fallback``), counted per metric.

KEDA counts, for each trigger, the consecutive evaluations whose read failed; once a
count *passes* ``failureThreshold`` (``failures > failureThreshold``), that trigger stops
holding the target where it is and asks for a count chosen by ``behavior``:

- ``static``: ``fallback.replicas``;
- ``currentReplicas``: the current count;
- ``currentReplicasIfHigher``: ``max(current, replicas)``;
- ``currentReplicasIfLower``: ``min(current, replicas)``.

Our rule on top: missing data never scales a service down unless the policy says
``behavior: static`` itself, so a non-static answer below ``current`` is raised to
``current`` (and the reason says so). The fallback count competes with the metrics that do
have readings like any other metric: the largest wins (KEDA #6659 shows what happens
otherwise: a healthy CPU trigger overridden by the fallback). A successful read resets
that metric's count.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from autoscaler.core.decision import MetricRecommendation
from autoscaler.core.policy import Fallback, FallbackBehavior


@dataclass(frozen=True, slots=True)
class FallbackAdvice:
    """What the fallback contributes this evaluation."""

    text: str  # for the reason; always set when a metric failed and a fallback is configured
    replicas: int | None = None  # the count asked for, when at least one metric is in fallback
    metrics: tuple[str, ...] = ()  # the metrics in fallback (their "missing" is covered)


def fallback_replicas(fallback: Fallback, current: int) -> tuple[int, str]:
    """The count ``fallback.behavior`` asks for at ``current``, and how it was reached."""
    behavior = fallback.behavior
    want = fallback.replicas
    if behavior is FallbackBehavior.STATIC:
        return want, f"behavior static -> fallback replicas {want}"
    if behavior is FallbackBehavior.CURRENT_REPLICAS:
        return current, f"behavior currentReplicas -> current {current}"
    if behavior is FallbackBehavior.CURRENT_REPLICAS_IF_HIGHER:
        high = max(current, want)
        return high, f"behavior currentReplicasIfHigher -> max(current {current}, replicas {want}) = {high}"
    low = min(current, want)
    if low < current:
        return current, (
            f"behavior currentReplicasIfLower would go to {low}, but missing data never scales down "
            f"unless behavior is static -> current {current}"
        )
    return low, f"behavior currentReplicasIfLower -> min(current {current}, replicas {want}) = {low}"


class FailureCounter:
    """Consecutive failed evaluations per metric of one policy, and the fallback they trigger."""

    __slots__ = ("_failures", "_fallback")

    def __init__(self, fallback: Fallback | None) -> None:
        self._fallback = fallback
        self._failures: dict[str, int] = {}

    def update_spec(self, fallback: Fallback | None, metric_names: Iterable[str]) -> None:
        """Adopt a reloaded policy; counts of metrics it still has are kept."""
        self._fallback = fallback
        keep = set(metric_names)
        self._failures = {n: c for n, c in self._failures.items() if n in keep}

    def failures(self, name: str) -> int:
        return self._failures.get(name, 0)

    def observe(self, current: int, recs: Sequence[MetricRecommendation]) -> FallbackAdvice | None:
        """Count this evaluation's reads (a recommendation without ``desired`` is a failed read);
        None when nothing failed or no fallback is configured."""
        failed = [r.name for r in recs if r.desired is None]
        if not failed and not self._failures:
            return None  # the usual evaluation: every read good, no count to reset
        for r in recs:
            if r.desired is not None:
                self._failures.pop(r.name, None)
        for name in failed:
            self._failures[name] = self._failures.get(name, 0) + 1
        fallback = self._fallback
        if fallback is None or not failed:
            return None
        threshold = fallback.failure_threshold
        over = tuple(n for n in failed if self._failures[n] > threshold)
        counts = ", ".join(f"{n} failed {self._failures[n]} in a row" for n in failed)
        if not over:
            return FallbackAdvice(f"{counts}; fallback once more than failureThreshold {threshold}")
        replicas, how = fallback_replicas(fallback, current)
        return FallbackAdvice(
            f"Fallback: {counts} (more than failureThreshold {threshold}); {how}",
            replicas=replicas,
            metrics=over,
        )
