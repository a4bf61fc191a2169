"""Activation from zero (KEDA ``activationThreshold`` and ``cooldownPeriod``; Knative's grace).

Applies when the floor in force is 0 (``minReplicas: 0``, no schedule raising it) and at
least one metric has an ``activationValue``. Those metrics decide 0 <-> 1; target tracking
decides 1 -> N as usual:

- *active*: some activation metric reads more than its ``activationValue`` (KEDA:
  ``value > activationThreshold``);
- at 0 replicas: active wakes the service to 1, anything else keeps it at 0;
- at 1 or more: the floor is 1 (target tracking alone cannot reach 0), and once no
  activation metric has been active for ``scaleToZeroAfterSeconds`` the service goes to 0.
  A missing reading counts as active (missing data never scales down), and so does the
  moment the service left 0 (a wake, ours or anyone's, restarts the grace), and the
  engine's start.

``emptyAs: zero`` (KEDA's ``ignoreNullValues: false`` turned round): a query that returned
no series reads as 0 instead of "no data", so a quiet service with no tasks can reach 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from autoscaler.core.decision import MetricReading, num
from autoscaler.core.policy import EmptyAs, PolicySpec


def zero_when_empty(spec: PolicySpec) -> tuple[str, ...]:
    """The metrics of ``spec`` with ``emptyAs: zero``."""
    return tuple(m.name for m in spec.metrics if m.empty_as is EmptyAs.ZERO)


def empty_as_zero(
    names: tuple[str, ...], readings: Mapping[str, MetricReading]
) -> tuple[Mapping[str, MetricReading], list[str]]:
    """``readings`` with the no-series readings of metrics ``names`` read as 0, and notes."""
    notes: list[str] = []
    changed: dict[str, MetricReading] | None = None
    for name in names:
        reading = readings.get(name)
        if reading is not None and reading.no_series:
            if changed is None:
                changed = dict(readings)
            changed[name] = MetricReading(name, 0.0)
            notes.append(f"{name}: no series, read as 0 (emptyAs: zero)")
    return (readings if changed is None else changed), notes


@dataclass(frozen=True, slots=True)
class ActivationView:
    """What activation says this evaluation: ``desired`` overrides the engine when set."""

    text: str
    desired: int | None = None
    limit: str = ""
    floor: int = 1  # without ``desired``: the least target tracking may ask for


class Activation:
    """The 0 <-> 1 decisions of one policy; pure, the time is passed in."""

    __slots__ = ("_grace", "_last_active", "_last_current", "_thresholds")

    def __init__(self, spec: PolicySpec, *, now: float) -> None:
        self._last_active = now  # the engine's start counts as activity (no scale to 0 at once)
        self._last_current: int | None = None
        self.update_spec(spec)

    def update_spec(self, spec: PolicySpec) -> None:
        self._thresholds = {
            m.name: m.activation_value for m in spec.metrics if m.activation_value is not None
        }
        self._grace = float(spec.scale_to_zero_after_seconds)

    def judge(
        self,
        *,
        now: float,
        current: int,
        floor: int,
        readings: Mapping[str, MetricReading],
        hold: str | None,
        fallback: bool = False,
    ) -> ActivationView | None:
        """None when activation does not apply (no activation metric, or the floor is above 0).

        ``fallback``: a policy fallback is deciding this evaluation (a metric kept failing).
        """
        previous, self._last_current = self._last_current, current
        if not self._thresholds:
            return None
        if previous == 0 and current > 0:
            self._last_active = now  # woken (by us or by hand): the grace starts again
        active: list[str] = []
        idle: list[str] = []
        unknown: list[str] = []
        for name, threshold in self._thresholds.items():
            reading = readings.get(name)
            if reading is None or not reading.valid:
                unknown.append(f"{name} has no reading")
                continue
            assert reading.value is not None  # valid
            if reading.value > threshold:
                active.append(f"{name} {num(reading.value)} > activationValue {num(threshold)}")
            else:
                idle.append(f"{name} {num(reading.value)} <= activationValue {num(threshold)}")
        if active or unknown:
            self._last_active = now  # also while a schedule holds the floor up
        if floor > 0:
            return None
        said = "; ".join(active + unknown + idle)
        if current == 0:
            if active:
                return ActivationView(f"activation: {said}: waking 0 -> 1", desired=1, limit="Activation")
            if unknown and fallback:
                return ActivationView(f"activation: {said}: the fallback decides", floor=0)
            why = "staying at 0" if not unknown else "staying at 0 (no wake on missing data)"
            return ActivationView(f"activation: {said}: {why}", desired=0, limit="Activation")
        if active or unknown:
            return ActivationView(f"activation: {said}: active, at least 1 replica")
        quiet = now - self._last_active
        if quiet < self._grace:
            return ActivationView(
                f"activation: {said}: idle for {quiet:g}s of scaleToZeroAfterSeconds {self._grace:g}, "
                "at least 1 replica"
            )
        if hold is not None:
            return ActivationView(f"activation: {said}: idle for {quiet:g}s, but no scale to zero: {hold}")
        return ActivationView(
            f"activation: {said}: idle for {quiet:g}s >= scaleToZeroAfterSeconds {self._grace:g}, to 0",
            desired=0,
            limit="ScaleToZero",
        )
