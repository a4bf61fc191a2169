"""The decision engine: one policy, one service, HPA's algorithm plus Knative's panic mode.

Pure: every method takes the time as a parameter. ``decide`` runs, in this order:

1. Bounds. The minReplicas/maxReplicas in force at ``wall_time``: ``spec``'s, raised (floor)
   or replaced (ceiling) by the open ``spec.schedules`` windows (``schedules.py``). Every
   later step uses these bounds. Then ``emptyAs: zero`` readings (``activation.py``).
2. Out-of-band change. If ``current`` is not the count the engine last knew (its own
   ``record_scale``, or ``current`` at the previous ``decide``), someone else scaled the
   service: that change is recorded as a scale event (rate limits) and ``current`` as a
   recommendation (stabilization), both at ``changed_at`` (the spec's ``UpdatedAt``).
3. Target tracking per metric (``tracking.py``, per-direction tolerance from
   ``tolerance.py``); the largest desired count wins. A metric that kept failing past
   ``spec.fallback.failureThreshold`` (``fallback.py``) competes with its fallback count
   instead (never below ``current`` unless ``behavior: static``). An invalid reading
   otherwise never allows a scale-down: if any metric has no usable reading and the
   valid ones ask for less than ``current`` (or there are none), nothing changes (HPA
   since 1.21).
4. Panic (Knative KPA): when the recommendation is at least ``threshold`` x running, a
   scale-up skips stabilization and rate limits. Panic mode lasts until the condition has
   been false for ``stableWindowSeconds`` (Knative: strictly longer); scale-down is
   suspended throughout. A fallback count never enters panic.
5. Activation from zero (``activation.py``), when the floor in force is 0: the activation
   metrics decide 0 <-> 1 (that decision overrides steps 6-9); at 1 or more they only set
   a floor of 1.
6. Forecasts (``forecast.py``, ``spec.predictive``): each metric's forecast over the horizon
   may raise the recommendation, never lower it; ``mode: forecastOnly`` only explains.
   Judged after panic (a forecast neither enters nor extends it) and after activation (it
   neither wakes a service nor keeps one from 0); the bounds of step 1 still cap it (7-9).
7. HPA's out-of-range rules, before behavior: 0 replicas with minReplicas > 0 means
   autoscaling is switched off (``ScalingDisabled``, HPA's convention); above maxReplicas
   or below minReplicas the service goes straight to the bound.
8. Stabilization windows (or panic's skip of them; steps 8-9 and their state live in
   ``scaling_behavior.py``), then the start-up guard: no
   scale-down until a whole scale-down window has passed since the engine started (HPA
   seeds its history with the start size for the same reason, but a later scale-up would
   let it scale down early). ``hold_scale_down`` (e.g. node failover in progress) forbids
   any scale-down.
9. Rate-limit policies, then minReplicas/maxReplicas.

``decide`` records its recommendation for stabilization but not a scale event: the caller
calls ``record_scale`` once the scale call succeeded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from autoscaler.core.activation import Activation, empty_as_zero, zero_when_empty
from autoscaler.core.decision import Decision, Forecast, MetricReading, MetricRecommendation, when
from autoscaler.core.fallback import FailureCounter
from autoscaler.core.forecast import Forecaster, raise_by_forecasts
from autoscaler.core.policy import PolicySpec
from autoscaler.core.predictive_policy import PredictiveMode
from autoscaler.core.scaling_behavior import ScaleStep, ScalingBehavior
from autoscaler.core.schedules import Bounds, ScheduleBook
from autoscaler.core.tolerance import Tolerances
from autoscaler.core.tracking import MetricTracker, invalid_why, needed_by_readings


class Engine:
    """Decision state for one policy (one service). Pure: time is passed in."""

    __slots__ = (
        "_activation",
        "_behavior",
        "_failures",
        "_forecaster",
        "_known",
        "_max",
        "_metrics",
        "_min",
        "_panic_enabled",
        "_panic_last",
        "_panic_threshold",
        "_panic_window",
        "_schedules",
        "_zero_when_empty",
        "bounds",
        "spec",
    )

    def __init__(self, spec: PolicySpec, *, now: float, current: int) -> None:
        """Start deciding for ``spec`` at ``now`` with the service at ``current`` replicas."""
        self._known = current
        self._panic_last: float | None = None  # last time the panic condition held
        self._failures = FailureCounter(spec.fallback)
        self._activation = Activation(spec, now=now)
        self._forecaster: Forecaster | None = None
        self._compile(spec)
        self._behavior = ScalingBehavior(spec, now=now, current=current)

    def _compile(self, spec: PolicySpec) -> None:
        self.spec = spec
        self._min = spec.min_replicas
        self._max = spec.max_replicas
        tolerances = Tolerances.of(spec)
        self._metrics = tuple(
            MetricTracker(
                m.name,
                per_replica=m.target.average_value is not None,
                target=m.target.amount,
                tolerance=tolerances,
            )
            for m in spec.metrics
        )
        self._panic_enabled = spec.panic.enabled
        self._panic_threshold = spec.panic.threshold
        self._panic_window = float(spec.panic.stable_window_seconds)
        self._schedules = ScheduleBook(spec)
        self._zero_when_empty = zero_when_empty(spec)
        self.bounds: Bounds = Bounds(spec.min_replicas, spec.max_replicas)
        self._compile_forecaster(spec)

    def _compile_forecaster(self, spec: PolicySpec) -> None:
        """A forecaster when predictive is on; a changed predictive block or metric set restarts it.

        Switching ``mode`` alone (forecastOnly -> act, once trusted) keeps the history.
        """
        names = tuple(m.name for m in spec.metrics)
        new, old = spec.predictive, self._forecaster
        if not new.enabled:
            self._forecaster = None
        elif (
            old is None
            or old.metric_names != names
            or old.config.model_copy(update={"mode": new.mode}) != new
        ):
            self._forecaster = Forecaster(new, names)
        else:
            old.config = new

    def update_spec(self, spec: PolicySpec) -> None:
        """Adopt a hot-reloaded policy; keep history, scale events and the start time."""
        self._compile(spec)
        self._failures.update_spec(spec.fallback, (m.name for m in spec.metrics))
        self._activation.update_spec(spec)
        self._behavior.update_spec(spec)
        if not self._panic_enabled:
            self._panic_last = None

    def record_scale(self, *, at: float, from_replicas: int, to_replicas: int) -> None:
        """The service was scaled (by us): count it against the rate limits."""
        self._behavior.record_scale(at, from_replicas, to_replicas)
        self._known = to_replicas

    def scale_history(self, now: float) -> tuple[list[ScaleStep], list[ScaleStep]]:
        """(added, removed): the scale events the rate limits still count at ``now``, oldest
        first, as ``(at, replicas)``; what a restarted controller needs to go on counting."""
        return self._behavior.scale_history(now)

    def restore_scale_history(self, up: list[ScaleStep], down: list[ScaleStep], now: float) -> None:
        """Count scale events made before this engine existed (a previous controller's).

        Events later than ``now`` are taken as made ``now``: a clock that ran ahead on the
        previous controller's node must not hold the limits for longer than its periods.
        """
        self._behavior.restore_scale_history(up, down, now)

    def decide(
        self,
        *,
        now: float,
        current: int,
        running: int,
        readings: Mapping[str, MetricReading],
        changed_at: float | None = None,
        hold_scale_down: str | None = None,
        wall_time: float | None = None,
    ) -> Decision:
        """Decide the replica count for the service now.

        ``current``: replicas the service spec asks for; ``running``: tasks running (what
        per-replica averages divide by); ``readings`` keyed by metric name, a policy metric
        without one counts as missing. ``changed_at``: the spec's UpdatedAt, the time of an
        out-of-band change if ``current`` is not what the engine last knew (``now`` if None).
        ``hold_scale_down``: when set, no scale-down happens and the text says why.
        ``wall_time``: Unix seconds for ``spec.schedules`` (None: schedules not applied).
        """
        parts: list[str] = []
        self.bounds = bounds = self._schedules.bounds(wall_time)  # kept for gauges and /decisions
        self._min, self._max = bounds.min_replicas, bounds.max_replicas
        if bounds.text:
            parts.append(bounds.text)
        if self._zero_when_empty:
            readings, empty_notes = empty_as_zero(self._zero_when_empty, readings)
            parts.extend(empty_notes)
        if current != self._known:
            at = now if changed_at is None or changed_at > now else changed_at
            self._behavior.record_out_of_band(at, self._known, current)
            parts.append(f"service was scaled out of band from {self._known} to {current} at {when(at)}")
            self._known = current
        self._behavior.prune(now)

        # Target tracking, largest wins; invalid readings noted.
        best: int | None = None
        best_name = ""
        missing = 0
        recs = []
        for tracker in self._metrics:
            name = tracker.name
            reading = readings.get(name)
            why = invalid_why(reading)
            if why is not None:
                recs.append(MetricRecommendation(name, None, None, f"{name}: no reading ({why})"))
                missing += 1
                continue
            assert reading is not None and reading.value is not None  # invalid_why checked both
            value = reading.value
            desired, text = tracker.track(value, current, running)
            recs.append(MetricRecommendation(name, value, desired, text))
            if best is None or desired > best:
                best, best_name = desired, name
        metrics = tuple(recs)
        parts.append(", ".join(r.reason for r in recs))
        if best is not None and len(recs) - missing > 1:
            parts.append(f"largest: {best_name} -> {best}")

        limits: list[str] = []
        advice = self._failures.observe(current, recs)
        if advice is not None:
            parts.append(advice.text)
            if advice.replicas is not None:
                limits.append("Fallback")
                missing -= len(advice.metrics)
                if best is None or advice.replicas > best:
                    best = advice.replicas
                    if recs:
                        parts.append(f"largest: fallback -> {best}")
        recommendation = current if best is None else best
        # HPA refuses a decision only when a metric is missing and the rest say scale down.
        usable = best is not None and (not missing or best >= current)
        if not usable:
            limits.append("MissingMetrics")
            if best is None:
                parts.append("MissingMetrics: no metric has a usable reading")
            else:
                parts.append(
                    f"MissingMetrics: no scale-down while a metric is missing (the others say {best})"
                )
            recommendation = current
        elif missing:
            parts.append("going by the metrics with readings, which do not ask for a scale-down")

        # Panic state, judged only on usable data (missing data neither enters nor extends it).
        panic_cond = False
        if usable and self._panic_enabled and "Fallback" not in limits:
            panic_cond = recommendation >= self._panic_threshold * max(running, 1)
            if panic_cond:
                self._panic_last = now
        in_panic = self._panic_last is not None and now <= self._panic_last + self._panic_window
        if not in_panic:
            self._panic_last = None

        wake = self._activation.judge(
            now=now,
            current=current,
            floor=self._min,
            readings=readings,
            hold=hold_scale_down,
            fallback="Fallback" in limits,
        )
        if wake is not None:
            parts.append(wake.text)
            if wake.desired is None:  # 1 -> N is target tracking's, with a floor of 1
                self._min = max(self._min, wake.floor)
                recommendation = max(recommendation, wake.floor)
        reactive = recommendation

        # Forecasts after panic: a forecast alone neither enters nor extends panic mode. After
        # activation too: 0 <-> 1 is the activation metrics' call, so a forecast neither wakes
        # a service nor keeps it from going to 0 (its history is still fed, for later).
        forecasts: tuple[Forecast, ...] = ()
        floor: int | None = None
        due = -math.inf
        if self._forecaster is not None:
            valid = {r.name: r.value for r in recs if r.value is not None}
            forecasts = tuple(self._forecaster.step(now, valid))
            parts.extend(self._behavior.check_forecasts(now, valid, self._metrics))
            if wake is not None and wake.desired is not None:
                if forecasts:
                    parts.append("forecast not used: activation decides 0 <-> 1")
            elif usable:
                recommendation, notes = raise_by_forecasts(
                    forecasts,
                    {t.name: t for t in self._metrics},
                    current=current,
                    running=running,
                    recommendation=recommendation,
                    act=self._forecaster.config.mode is PredictiveMode.ACT,
                    readings=valid,
                )
                parts.extend(notes)
                if recommendation > reactive:
                    limits.append("Forecast")
                    due = now + self._forecaster.horizon()
                    self._behavior.claim(now, due, recommendation, forecasts, valid)
                # What the readings alone ask for: a wrong forecast's take-back stops there.
                needed = needed_by_readings(self._metrics, recs, running) if "Fallback" not in limits else []
                floor = min(reactive, max(needed, default=reactive))

        # HPA's out-of-range rules come before behavior, as in its reconcileAutoscaler.
        desired = current
        if wake is not None and wake.desired is not None:
            desired = wake.desired
            if desired != current:
                limits.append(wake.limit)
        elif current == 0 and self.spec.min_replicas > 0:
            limits.append("ScalingDisabled")
            parts.append(
                f"ScalingDisabled: service is at 0 replicas and minReplicas is {self.spec.min_replicas}; "
                "HPA treats 0 as autoscaling switched off, scale the service up to resume"
            )
        elif current > self._max or current < self._min:
            bound, name = (
                (self._max, "TooManyReplicas") if current > self._max else (self._min, "TooFewReplicas")
            )
            if bound < current and hold_scale_down is not None:
                limits.append("Hold")
                parts.append(f"{name} not applied: {hold_scale_down}")
            else:
                desired = bound
                limits.append(name)
                side = "above maxReplicas" if name == "TooManyReplicas" else "below minReplicas"
                parts.append(f"{name}: current {current} is {side} {bound}")
        elif usable:
            desired = self._behave(
                now, current, recommendation, panic_cond, in_panic, hold_scale_down, parts, limits, floor, due
            )

        if desired == current:
            parts.append(f"keep {current}")
        else:
            parts.append(f"scale {current} -> {desired}")
        return Decision(
            at=now,
            current=current,
            running=running,
            desired=desired,
            recommendation=recommendation,
            reason="; ".join(parts),
            panic=in_panic,
            metrics=metrics,
            limits=tuple(limits),
            forecasts=forecasts,
        )

    def _behave(
        self,
        now: float,
        current: int,
        rec: int,
        panic_cond: bool,
        in_panic: bool,
        hold: str | None,
        parts: list[str],
        limits: list[str],
        floor: int | None,
        due: float,
    ) -> int:
        """Panic's skip of behavior for a scale-up, else ``ScalingBehavior.apply``."""
        if panic_cond and rec > current:
            self._behavior.remember(now, rec, floor=floor, due=due)
            limits.append("Panic")
            if rec > self._max:
                limits.append("TooManyReplicas")
                parts.append(
                    f"panic: skipping stabilization and rate limits, capped by maxReplicas {self._max}"
                )
                return self._max
            parts.append(
                f"panic: {rec} >= {self._panic_threshold:g} x running, skipping stabilization and rate limits"
            )
            return rec
        panic_left = None
        if in_panic:
            assert self._panic_last is not None
            panic_left = self._panic_last + self._panic_window - now
        bounds = (self._min, self._max)
        return self._behavior.apply(now, current, rec, bounds, panic_left, hold, parts, limits, (floor, due))
