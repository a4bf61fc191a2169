"""Value objects that cross the boundary between the pure core and the I/O around it.

Sources produce ``MetricReading``s, the engine turns them into a ``Decision``; the
reconciler, the simulator, logs and ``/decisions`` all print the same objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class MetricReading:
    """What a source reported for one metric of one service at one time.

    ``value`` is None when the source had no data; ``error`` then says why
    (``"no data"``, ``"NaN"``, ``"prometheus: connection refused"``...).
    """

    name: str
    value: float | None
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.value is not None and math.isfinite(self.value) and self.value >= 0

    @staticmethod
    def missing(name: str, why: str) -> MetricReading:
        return MetricReading(name=name, value=None, error=why)


@dataclass(frozen=True, slots=True)
class MetricRecommendation:
    """One metric's opinion: ``desired`` replicas (None when the reading was invalid)."""

    name: str
    value: float | None
    desired: int | None
    reason: str


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
    and min/max; ``desired`` the final number. ``limits`` names every clamp that changed
    the number, in HPA's vocabulary (ScaleUpLimit, ScaleDownStabilized, TooManyReplicas...).
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

    @property
    def direction(self) -> Direction:
        if self.desired > self.current:
            return Direction.UP
        if self.desired < self.current:
            return Direction.DOWN
        return Direction.NONE
