"""Checking forecasts when their time comes, so a wrong one is not held. Pure.

A forecast that raised the recommendation to N said: "in ``horizon`` seconds the load will
need N". That recommendation then sits in the scale-down stabilization window (300 s by
default) like any other. Once the time it was made for has come, the engine asks target
tracking about the load read then (each metric's reading at the first evaluation at or
after the due time), as if N replicas were serving it (so the tolerance judges the
forecast's count, not today's). If that keeps N (the reading within N's scale-down
tolerance) or asks for more, the forecast came true and nothing changes: its count is held
like a reactive one. The reading is judged against N's capacity, not against the forecast
value: a forecast within the tolerance band of the current count already asks to keep it,
so a check within tolerance of that value again would confirm a count on a load down to
81 % of its target (the two tolerances compounded). If it asks for fewer, the forecast
overshot: the recommendations made from the forecast's time until its due time are taken
back to that answer, never below what the readings of their own time asked for
(``RecommendationHistory.take_back``). So a forecast counts for the horizon it was made
for, and after that only as far as the load at that time bore it out.

The reading at the due time, not the highest since the forecast was made: the highest of
four noisy readings confirmed forecasts the load did not bear out, and on the training
traces judging by it cost 0.2-0.3 % more replica-seconds for the same overload
(docs/benchmarks.md). What the forecast said was the load at its due time; that is what
is checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from autoscaler.core.tracking import MetricTracker


@dataclass(slots=True)
class Claim:
    """A recommendation a forecast raised: ``replicas`` made at ``made`` for ``due``.

    ``forecasts``: the value each metric was forecast to reach by ``due``; ``latest``: each
    metric's newest reading (at settling time, the one at the due time).
    """

    made: float
    due: float
    replicas: int
    forecasts: dict[str, float]
    latest: dict[str, float] = field(default_factory=dict)

    def verdict(self, trackers: Sequence[MetricTracker]) -> int | None:
        """None if the readings bore the forecast out (target tracking on a metric's reading
        at ``replicas`` keeps that count or asks for more), else the replicas they ask for."""
        asked = []
        for t in trackers:
            value = self.latest.get(t.name)
            if t.name not in self.forecasts or value is None:
                continue
            if t.track(value, self.replicas, self.replicas)[0] >= self.replicas:
                return None
            asked.append(t.needed(value, self.replicas))
        return max(asked, default=None)


class ForecastClaims:
    """The forecast-raised recommendations whose due time has not been checked yet."""

    __slots__ = ("_open",)

    def __init__(self) -> None:
        # A list, not a deque: every engine has one, mostly empty, and an empty deque
        # alone is ~760 bytes (7 MiB over 10,000 engines; issue 15).
        self._open: list[Claim] = []

    def __len__(self) -> int:
        return len(self._open)

    def add(
        self, made: float, due: float, replicas: int, forecasts: dict[str, float], values: dict[str, float]
    ) -> None:
        """A forecast raised the recommendation to ``replicas`` at ``made``; ``values``: the readings then."""
        self._open.append(Claim(made, due, replicas, forecasts, dict(values)))

    def settle(
        self, now: float, values: dict[str, float], trackers: Sequence[MetricTracker]
    ) -> list[tuple[Claim, int]]:
        """The claims due by ``now`` that overshot, each with what the load asks for instead.

        ``values``: this evaluation's valid readings, first made every open claim's latest
        (a metric with no valid reading now keeps its previous one).
        """
        for claim in self._open:
            claim.latest.update(values)
        overshot = []
        while self._open and self._open[0].due <= now:
            claim = self._open.pop(0)
            verdict = claim.verdict(trackers)
            if verdict is not None and verdict < claim.replicas:
                overshot.append((claim, verdict))
        return overshot
