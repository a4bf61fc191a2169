"""HPA target tracking for one metric: a reading and a target in, desired replicas out.

Follows Kubernetes' ``replica_calculator.go`` for External metrics:

- AverageValue target: ``ratio = value / (running x target)``; outside tolerance,
  ``desired = ceil(value / target)`` (``GetExternalPerPodMetricReplicas``).
- Value target: ``ratio = value / target``; outside tolerance,
  ``desired = ceil(running x ratio)`` (``getUsageRatioReplicaCount``).
- Within tolerance (``|1 - ratio| <= tolerance``, running > 0) the metric asks for the
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

import math

from autoscaler.core.decision import MetricReading

# Above this a quotient is certainly beyond any maxReplicas (<= 10,000); cap it so huge or
# overflowing ratios (1e308 / 0.001) stay plain ints.
_REPLICAS_CAP = 1_000_000_000
_SNAP = 1e-9


def ceil_replicas(x: float) -> int:
    """ceil(x) for a replica quotient, ignoring float residue below 1e-9 relative."""
    if not x < _REPLICAS_CAP:  # also catches inf and NaN
        return _REPLICAS_CAP
    n = round(x)
    if abs(x - n) <= _SNAP * (n if n > 1 else 1):
        return int(n)
    return math.ceil(x)


def num(x: float) -> str:
    """Compact number for reasons: 512, 128.3, 0.05, 12346 (never 15 digits)."""
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    if abs(x) >= 1e4:
        return f"{x:.0f}"
    return f"{x:.4g}"


def invalid_why(reading: MetricReading | None) -> str | None:
    """Why a reading cannot be used, or None when it is valid."""
    if reading is None:
        return "no reading"
    v = reading.value
    if v is None:
        return reading.error or "no data"
    if v != v:
        return reading.error or "NaN"
    if v in (math.inf, -math.inf):
        return reading.error or "infinite"
    if v < 0:
        return reading.error or f"negative ({num(v)})"
    return None


def track_average(
    name: str, value: float, target: float, current: int, running: int, tolerance: float
) -> tuple[int, str]:
    """AverageValue target: (desired, reason)."""
    if running > 0:
        per = value / running
        ratio = per / target
        head = f"{name} {num(value)} over {running} running = {num(per)} per replica vs target {num(target)}"
        if abs(1.0 - ratio) <= tolerance:
            return current, f"{head}, within tolerance {num(tolerance)} -> {current}"
        desired = ceil_replicas(value / target)
        return desired, f"{head} -> {desired}"
    desired = ceil_replicas(value / target)
    return desired, f"{name} {num(value)} with 0 running vs target {num(target)} per replica -> {desired}"


def track_value(
    name: str, value: float, target: float, current: int, running: int, tolerance: float
) -> tuple[int, str]:
    """Value target (the whole service's number): (desired, reason)."""
    ratio = value / target
    if running > 0:
        head = f"{name} {num(value)} vs target {num(target)} (ratio {num(ratio)})"
        if abs(1.0 - ratio) <= tolerance:
            return current, f"{head}, within tolerance {num(tolerance)} -> {current}"
        desired = ceil_replicas(running * ratio)
        return desired, f"{head} x {running} running -> {desired}"
    desired = ceil_replicas(ratio)
    return desired, f"{name} {num(value)} with 0 running vs target {num(target)} -> {desired}"
