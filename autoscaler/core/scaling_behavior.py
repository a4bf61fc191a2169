"""The engine's steps 8-9: stabilization, the start-up guard, hold and rate limits, with
the state they keep for one service. Pure: time is passed in.

``ScalingBehavior`` owns the recommendation history (stabilization windows), the scale
events (rate-limit periods), the engine's start time (the start-up guard) and, with
``spec.predictive``, the forecasts waiting to be checked (``forecast_claims.py``);
``Engine.decide`` hands it the recommendation of steps 3-6 and gets the replica count back.
The windows and policies themselves are plain data from ``behavior.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from autoscaler.core.behavior import (
    DirectionRules,
    RatePolicy,
    RecommendationHistory,
    ScaleEvents,
    compile_rules,
    scale_down_limit,
    scale_up_limit,
)
from autoscaler.core.decision import Forecast, when
from autoscaler.core.forecast_claims import ForecastClaims
from autoscaler.core.policy import PolicySpec
from autoscaler.core.tracking import MetricTracker

# One scale event as the rate limits count it: (time, replicas added or removed).
ScaleStep = tuple[float, int]


class ScalingBehavior:
    """``spec.behavior`` applied to one service's recommendations, with its history."""

    __slots__ = ("_claims", "_down", "_history", "_scale_events", "_started", "_up")

    def __init__(self, spec: PolicySpec, *, now: float, current: int) -> None:
        self._started = now
        self._compile(spec)
        self._history = RecommendationHistory(self._up.window, self._down.window)
        self._scale_events = ScaleEvents(max(self._up.longest_period, self._down.longest_period))
        # HPA seeds the history with the size found at start so the first scale-down waits.
        self._history.add(now, current)
        self._claims = ForecastClaims()  # forecast-raised recommendations not yet checked

    def _compile(self, spec: PolicySpec) -> None:
        b = spec.behavior
        self._up: DirectionRules = compile_rules(b.up_window, b.scale_up.select_policy, b.up_policies)
        self._down: DirectionRules = compile_rules(b.down_window, b.scale_down.select_policy, b.down_policies)

    def update_spec(self, spec: PolicySpec) -> None:
        """Adopt a hot-reloaded policy's behavior; keep history, scale events and start time."""
        self._compile(spec)
        self._history.set_windows(self._up.window, self._down.window)
        self._scale_events.set_keep(max(self._up.longest_period, self._down.longest_period))

    def record_scale(self, at: float, from_replicas: int, to_replicas: int) -> None:
        """A scale event, ours or someone else's: counted against the rate limits."""
        self._scale_events.record(at, from_replicas, to_replicas)

    def record_out_of_band(self, at: float, from_replicas: int, to_replicas: int) -> None:
        """Someone else scaled the service: a scale event and a recommendation at ``at``."""
        self._scale_events.record(at, from_replicas, to_replicas)
        self._history.add(at, to_replicas)

    def prune(self, now: float) -> None:
        self._scale_events.prune(now)

    def scale_history(self, now: float) -> tuple[list[ScaleStep], list[ScaleStep]]:
        """(added, removed) scale events the rate limits still count at ``now``, oldest first."""
        self._scale_events.prune(now)
        return list(self._scale_events.up), list(self._scale_events.down)

    def restore_scale_history(self, up: list[ScaleStep], down: list[ScaleStep], now: float) -> None:
        """Count scale events made before this engine existed; later than ``now`` means ``now``."""
        events = self._scale_events
        events.up = sorted([*events.up, *((min(at, now), n) for at, n in up)])
        events.down = sorted([*events.down, *((min(at, now), n) for at, n in down)])
        events.prune(now)

    def remember(self, now: float, rec: int, *, floor: int | None = None, due: float = -math.inf) -> None:
        """Record a recommendation that skipped stabilization (panic), for later windows."""
        self._history.add(now, rec, floor=floor, due=due)

    def claim(
        self, now: float, due: float, replicas: int, forecasts: Sequence[Forecast], values: dict[str, float]
    ) -> None:
        """A forecast raised the recommendation to ``replicas`` now, for ``due`` (forecast_claims.py)."""
        foretold = {f.metric: f.value for f in forecasts if f.value is not None}
        self._claims.add(now, due, replicas, foretold, values)

    def check_forecasts(
        self, now: float, values: dict[str, float], trackers: Sequence[MetricTracker]
    ) -> list[str]:
        """Take back the recommendations of forecasts now due that the readings did not bear out."""
        notes = []
        for claim, verdict in self._claims.settle(now, values, trackers):
            left = self._history.take_back(claim.made, claim.due, verdict, now)
            if left:
                notes.append(
                    f"forecast -> {claim.replicas} for {when(claim.due)} overshot (the load then asks "
                    f"{verdict} at {claim.replicas} replicas): its recommendations count as {left} at most"
                )
        return notes

    def apply(
        self,
        now: float,
        current: int,
        rec: int,
        bounds: tuple[int, int],
        panic_left: float | None,
        hold: str | None,
        parts: list[str],
        limits: list[str],
        floor_due: tuple[int | None, float] = (None, -math.inf),
    ) -> int:
        """Stabilization, start-up guard, hold, rate limits and min/max for ``rec``.

        ``bounds``: (minReplicas, maxReplicas) in force. ``panic_left``: seconds of panic
        mode left (it suspends scale-down), None outside it. A scale-up in panic skips all
        this: the engine only calls ``remember``. ``floor_due``: what the readings alone asked
        for and, if a forecast raised ``rec``, the time it was for (see ``check_forecasts``).
        """
        low, high = bounds
        floor, due = floor_due
        up_bound, down_bound = self._history.add_and_bounds(now, rec, floor=floor, due=due)
        stabilized = min(max(current, up_bound), down_bound)
        if stabilized != rec:
            if rec > current:
                limits.append("ScaleUpStabilized")
                parts.append(
                    f"ScaleUpStabilized: lowest recommendation in the last {self._up.window:g}s is {up_bound}"
                )
            elif rec < current:
                limits.append("ScaleDownStabilized")
                parts.append(
                    "ScaleDownStabilized: highest recommendation in the last "
                    f"{self._down.window:g}s is {down_bound}"
                )

        if stabilized < current:
            stabilized = self._guard_scale_down(now, current, stabilized, panic_left, hold, parts, limits)

        if stabilized > current:
            limit, policy, start = scale_up_limit(current, now, self._scale_events, self._up)
            if high <= limit:
                if stabilized > high:
                    limits.append("TooManyReplicas")
                    parts.append(f"TooManyReplicas: capped by maxReplicas {high}")
                    return high
            elif stabilized > limit:
                limits.append("ScaleUpLimit")
                parts.append(_rate_text("scaleUp", policy, start, current))
                return limit
        elif stabilized < current:
            limit, policy, start = scale_down_limit(current, now, self._scale_events, self._down)
            if low >= limit:
                if stabilized < low:
                    limits.append("TooFewReplicas")
                    parts.append(f"TooFewReplicas: held at minReplicas {low}")
                    return low
            elif stabilized < limit:
                limits.append("ScaleDownLimit")
                parts.append(_rate_text("scaleDown", policy, start, current))
                return limit
        return stabilized

    def _guard_scale_down(
        self,
        now: float,
        current: int,
        stabilized: int,
        panic_left: float | None,
        hold: str | None,
        parts: list[str],
        limits: list[str],
    ) -> int:
        """``stabilized``, or ``current`` when a hold, panic mode or the start-up guard forbids
        scaling down."""
        age = now - self._started
        if hold is not None:
            limits.append("Hold")
            parts.append(f"no scale-down: {hold}")
        elif panic_left is not None:
            limits.append("Panic")
            parts.append(f"panic mode: scale-down suspended for {panic_left:g}s more")
        elif age < self._down.window:
            if "ScaleDownStabilized" not in limits:
                limits.append("ScaleDownStabilized")
            parts.append(
                f"ScaleDownStabilized: controller started {age:g}s ago, "
                f"scale-down needs a full {self._down.window:g}s window"
            )
        else:
            return stabilized
        return current


def _rate_text(direction: str, policy: RatePolicy | None, start: int, current: int) -> str:
    if policy is None:
        return f"{direction} selectPolicy Disabled"
    since = f" (from {start} at period start)" if start != current else ""
    hint = ""
    if start == 0 and policy.percent:
        hint = " (a Percent policy cannot grow from 0 replicas: add a Replicas policy)"
    return f"capped by {direction} policy {policy.label}{since}{hint}"
