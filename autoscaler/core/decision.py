"""Value objects that cross the boundary between the pure core and the I/O around it.

Sources produce ``MetricReading``s, the engine turns them into a ``Decision``; the
reconciler, the simulator, logs and ``/decisions`` all print the same objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

# Times this large are Unix timestamps (reconciler); smaller ones are simulation seconds.
_EPOCH_LIKE = 365 * 86400.0


def when(t: float) -> str:
    """A decision time for reasons: ISO UTC for Unix seconds, ``t=42s`` in a simulation."""
    if t >= _EPOCH_LIKE:
        return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"t={t:g}s"


def num(x: float) -> str:
    """Compact number for reasons: 512, 128.3, 0.05, 12346 (never 15 digits)."""
    text = f"{x:.4g}"
    if "e" in text and (x >= 1.0 or x <= -1.0):
        return f"{x:.0f}"
    return text


@dataclass(frozen=True, slots=True)
class MetricReading:
    """What a source reported for one metric of one service at one time.

    ``value`` is None when the source had no data; ``error`` then says why
    (``"no data"``, ``"NaN"``, ``"prometheus: connection refused"``...). ``no_series``
    marks the one kind of "no data" that a metric's ``emptyAs: zero`` reads as 0: the
    query ran and returned no series at all.
    """

    name: str
    value: float | None
    error: str | None = None
    no_series: bool = False

    @property
    def problem(self) -> str | None:
        """Why this reading cannot be used (the source's own error first), or None."""
        v = self.value
        if v is None:
            return self.error or "no data"
        if math.isnan(v):
            return self.error or "NaN"
        if math.isinf(v):
            return self.error or "infinite"
        if v < 0:
            return self.error or f"negative ({num(v)})"
        return None

    @property
    def valid(self) -> bool:
        return self.problem is None

    @staticmethod
    def missing(name: str, why: str) -> MetricReading:
        return MetricReading(name=name, value=None, error=why)

    @staticmethod
    def empty(name: str) -> MetricReading:
        """The query succeeded and returned no series."""
        return MetricReading(name=name, value=None, error="no data", no_series=True)


@dataclass(frozen=True, slots=True)
class MetricRecommendation:
    """One metric's opinion: ``desired`` replicas (None when the reading was invalid)."""

    name: str
    value: float | None
    desired: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class Forecast:
    """One metric's forecast at one evaluation.

    ``value`` is the forecast ``horizon`` seconds ahead, or None when it is not to be
    used; ``note`` then says why (too little history, too noisy).
    """

    metric: str
    value: float | None
    horizon: float
    method: str  # "trend over 60 s", "Holt over 60 s", "... + daily pattern"
    note: str | None = None


class Direction(StrEnum):
    UP = "up"
    DOWN = "down"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one evaluation of one policy.

    ``current`` is the replica count the service spec asks for now (what a scale call
    changes); ``running`` the tasks actually running (what per-replica averages divide by).
    ``recommendation`` is the raw target-tracking answer before stabilization, rate limits
    and min/max (raised by a forecast with ``spec.predictive``); ``desired`` the final
    number. ``limits`` names every clamp that changed the number, in HPA's vocabulary
    (ScaleUpLimit, ScaleDownStabilized, TooManyReplicas...), plus ``Forecast``.
    """

    at: float
    current: int
    running: int
    desired: int
    recommendation: int
    reason: str
    panic: bool = False
    metrics: tuple[MetricRecommendation, ...] = ()
    limits: tuple[str, ...] = field(default_factory=tuple)
    forecasts: tuple[Forecast, ...] = ()  # with spec.predictive enabled, one per metric with a reading

    @property
    def direction(self) -> Direction:
        if self.desired > self.current:
            return Direction.UP
        if self.desired < self.current:
            return Direction.DOWN
        return Direction.NONE
