"""HPA target tracking for one metric: a reading and a target in, desired replicas out.

Follows Kubernetes' ``replica_calculator.go`` for External metrics:

- AverageValue target: ``ratio = value / (running x target)``; outside tolerance,
  ``desired = ceil(value / target)`` (``GetExternalPerPodMetricReplicas``).
- Value target: ``ratio = value / target``; outside tolerance,
  ``desired = ceil(running x ratio)`` (``getUsageRatioReplicaCount``).
- Within tolerance (``1 - down <= ratio <= 1 + up``, running > 0; ``tolerance.py``) the metric asks for the
  current count. HPA returns its status replica count there; we return ``current`` so a
  metric that is on target never moves the service by itself.
- With 0 running replicas there is nothing to average over: ``desired = ceil(value / target)``
  for either kind, and no tolerance (HPA's scale-from-zero rule).

Float noise: HPA divides integer milli-quantities, so ``1100m / 100m`` is exactly 11. Our
readings are floats and ``1.1 / 0.1`` is ``11.000000000000002``; ``ceil_replicas`` snaps a
quotient within 1e-9 (relative) of an integer onto it first, giving HPA's answer for every
input that is a whole number of milli-units. The tolerance comparison is left as HPA
does it (same float64 ratio, no snapping).
"""

from __future__ import annotations

from collections.abc import Sequence

from autoscaler.core.decision import MetricReading, MetricRecommendation, num
from autoscaler.core.tolerance import Tolerances

__all__ = ["MetricTracker", "ceil_replicas", "invalid_why", "needed_by_readings", "num"]

# Above this a quotient is certainly beyond any maxReplicas (<= 10,000); cap it so huge or
# overflowing ratios (1e308 / 0.001) stay plain ints.
_REPLICAS_CAP = 1_000_000_000
_SNAP = 1e-9


def ceil_replicas(x: float) -> int:
    """ceil(x) for a non-negative replica quotient, ignoring float residue below 1e-9 relative."""
    if not x < _REPLICAS_CAP:  # also catches inf and NaN
        return _REPLICAS_CAP
    whole = int(x)
    if x - whole <= _SNAP * (whole or 1):
        return whole
    return whole + 1


def invalid_why(reading: MetricReading | None) -> str | None:
    """Why a reading cannot be used, or None when it is valid."""
    if reading is None:
        return "no reading"
    return reading.problem


class MetricTracker:
    """One metric of a policy, with its reason fragments formatted once per spec."""

    __slots__ = ("_target_text", "_tolerance_text", "name", "per_replica", "target", "tolerance")

    def __init__(self, name: str, *, per_replica: bool, target: float, tolerance: Tolerances) -> None:
        self.name = name
        self.per_replica = per_replica
        self.target = target
        self.tolerance = tolerance
        self._target_text = num(target)
        self._tolerance_text = f", within tolerance {tolerance.text} -> "

    def needed(self, value: float, running: int) -> int:
        """What ``value`` asks for with no tolerance: the count that puts it on target."""
        if self.per_replica or running == 0:
            return ceil_replicas(value / self.target)
        return ceil_replicas(running * value / self.target)

    def over_target(self, value: float, running: int, margin: float = 0.0) -> bool:
        """Whether ``value`` is more than ``margin`` above the target for ``running``
        replicas (ratio above 1 + margin), tolerance or not; never with 0 running (nothing
        to average over)."""
        if running == 0:
            return False
        ratio = value / (running * self.target) if self.per_replica else value / self.target
        return ratio > 1.0 + margin

    def track(self, value: float, current: int, running: int) -> tuple[int, str]:
        """(desired replicas, reason) for a valid ``value``."""
        target = self.target
        if self.per_replica:
            if running > 0:
                per = value / running
                head = (
                    f"{self.name} {num(value)} over {running} running = {num(per)} per replica "
                    f"vs target {self._target_text}"
                )
                if self.tolerance.within(per / target):
                    return current, f"{head}{self._tolerance_text}{current}"
                desired = ceil_replicas(value / target)
                return desired, f"{head} -> {desired}"
            desired = ceil_replicas(value / target)
            return desired, (
                f"{self.name} {num(value)} with 0 running vs target {self._target_text} "
                f"per replica -> {desired}"
            )
        ratio = value / target
        if running > 0:
            head = f"{self.name} {num(value)} vs target {self._target_text} (ratio {num(ratio)})"
            if self.tolerance.within(ratio):
                return current, f"{head}{self._tolerance_text}{current}"
            desired = ceil_replicas(running * ratio)
            return desired, f"{head} x {running} running -> {desired}"
        desired = ceil_replicas(ratio)
        return desired, f"{self.name} {num(value)} with 0 running vs target {self._target_text} -> {desired}"


def needed_by_readings(
    trackers: Sequence[MetricTracker], recs: Sequence[MetricRecommendation], running: int
) -> list[int]:
    """``needed`` for each metric with a value (``recs`` in the order of ``trackers``)."""
    return [t.needed(r.value, running) for t, r in zip(trackers, recs, strict=True) if r.value is not None]
