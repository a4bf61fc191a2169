"""Invariants of Engine.decide over random policies and random tick sequences (hypothesis).

Each example builds a policy, then runs a sequence of ticks in which the load, the
validity of each reading, hold, running tasks and out-of-band changes vary; every
decision is checked against the rules that must hold whatever the history.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from autoscaler.core.decision import Decision, MetricReading
from autoscaler.core.engine import Engine
from autoscaler.core.policy import PolicySpec
from autoscaler.core.predictive_policy import Predictive

rate_policy = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["Pods", "Percent"]),
        "value": st.integers(1, 300),
        "periodSeconds": st.sampled_from([15, 30, 60, 120]),
    }
)
rules = st.fixed_dictionaries(
    {},
    optional={
        "stabilizationWindowSeconds": st.sampled_from([0, 15, 60, 300]),
        "selectPolicy": st.sampled_from(["Max", "Min", "Disabled"]),
        "policies": st.lists(rate_policy, min_size=1, max_size=3),
    },
)


@st.composite
def specs(draw: st.DrawFn) -> PolicySpec:
    lo = draw(st.integers(0, 5))
    hi = draw(st.integers(max(lo, 1), 40))
    n_metrics = draw(st.integers(1, 3))
    metrics: list[dict[str, Any]] = []
    for i in range(n_metrics):
        kind = draw(st.sampled_from(["averageValue", "value"]))
        metrics.append(
            {
                "name": f"m{i}",
                "prometheus": {"query": "q"},
                "target": {kind: draw(st.sampled_from([0.5, 10, 100]))},
            }
        )
    doc = {
        "service": "svc",
        "minReplicas": lo,
        "maxReplicas": hi,
        "tolerance": draw(st.sampled_from([0.0, 0.1, 0.25])),
        "metrics": metrics,
        "behavior": {"scaleUp": draw(rules), "scaleDown": draw(rules)},
        "panic": {
            "enabled": draw(st.booleans()),
            "threshold": draw(st.sampled_from([1.5, 2.0, 4.0])),
            "stableWindowSeconds": draw(st.sampled_from([0, 30, 60])),
        },
    }
    return PolicySpec.model_validate(doc)


reading_value = st.one_of(
    st.floats(0, 5000, allow_nan=False),
    st.sampled_from([None, math.nan, math.inf, -1.0]),
)
tick = st.fixed_dictionaries(
    {
        "dt": st.sampled_from([0.5, 5, 15, 15, 60, 301]),
        "values": st.lists(reading_value, min_size=3, max_size=3),
        "running_gap": st.integers(0, 3),
        "hold": st.booleans(),
        "oob": st.one_of(st.none(), st.integers(0, 45)),
        "apply": st.booleans(),
    }
)


def readings_for(spec: PolicySpec, values: list[float | None]) -> dict[str, MetricReading]:
    out = {}
    for m, v in zip(spec.metrics, values, strict=False):
        out[m.name] = MetricReading(m.name, v) if v is not None else MetricReading.missing(m.name, "no data")
    return out


def all_valid(readings: dict[str, MetricReading]) -> bool:
    return all(r.valid for r in readings.values())


def check(spec: PolicySpec, d: Decision, readings: dict[str, MetricReading], hold: bool) -> None:
    lo, hi, cur = spec.min_replicas, spec.max_replicas, d.current
    disabled = cur == 0 and lo > 0
    assert d.reason and "\n" not in d.reason
    assert len(d.metrics) == len(spec.metrics)
    if disabled:
        assert d.desired == 0
        return
    # 1. Always inside [min, max], unless a hold keeps an over-max service where it is.
    if hold and cur > hi:
        assert d.desired == cur
    else:
        assert lo <= d.desired <= hi, (lo, d.desired, hi)
    # 2. Missing data never scales down (from inside the range).
    if not all_valid(readings) and cur <= hi:
        assert d.desired >= cur
    # 3. Never against the metrics' direction, except to get back inside [min, max].
    if d.desired > cur:
        assert d.recommendation > cur or cur < lo
    if d.desired < cur:
        assert d.recommendation < cur or cur > hi
        assert not hold
        assert not d.panic or cur > hi  # panic suspends scale-down, but maxReplicas is a hard cap
    # 4. Every MetricRecommendation of an invalid reading has no desired count.
    for m in d.metrics:
        assert (m.desired is None) == (not readings[m.name].valid)


@settings(max_examples=100, deadline=None)
@given(spec=specs(), start=st.integers(0, 45), ticks=st.lists(tick, min_size=1, max_size=25))
def test_invariants_hold_over_any_tick_sequence(
    spec: PolicySpec, start: int, ticks: list[dict[str, Any]]
) -> None:
    now = 1000.0
    engine = Engine(spec, now=now, current=start)
    current = start
    for t in ticks:
        now += t["dt"]
        changed_at = None
        if t["oob"] is not None and t["oob"] != current:
            current, changed_at = t["oob"], now - t["dt"] / 2
        readings = readings_for(spec, t["values"])
        running = max(0, current - t["running_gap"])
        hold = "failover in progress" if t["hold"] else None
        d = engine.decide(
            now=now,
            current=current,
            running=running,
            readings=readings,
            changed_at=changed_at,
            hold_scale_down=hold,
        )
        check(spec, d, readings, t["hold"])
        if t["apply"] and d.desired != current:
            engine.record_scale(at=now, from_replicas=current, to_replicas=d.desired)
            current = d.desired


@settings(max_examples=100, deadline=None)
@given(
    spec=specs(),
    start=st.integers(1, 40),
    values=st.lists(reading_value, min_size=3, max_size=3),
    gap=st.integers(0, 3),
)
def test_same_inputs_twice_give_the_same_decision(
    spec: PolicySpec, start: int, values: list[float | None], gap: int
) -> None:
    engine = Engine(spec, now=0.0, current=start)
    readings = readings_for(spec, values)
    running = max(0, start - gap)
    first = engine.decide(now=400.0, current=start, running=running, readings=readings)
    second = engine.decide(now=400.0, current=start, running=running, readings=readings)
    assert (second.desired, second.recommendation, second.reason) == (
        first.desired,
        first.recommendation,
        first.reason,
    )


@settings(max_examples=100, deadline=None)
@given(spec=specs(), start=st.integers(1, 40), ratios=st.lists(st.floats(-1, 1), min_size=3, max_size=3))
def test_metrics_within_tolerance_keep_current(spec: PolicySpec, start: int, ratios: list[float]) -> None:
    if not spec.min_replicas <= start <= spec.max_replicas:
        start = spec.min_replicas or 1
    values = []
    for m, r in zip(spec.metrics, ratios, strict=False):
        on_target = m.target.amount * (start if m.target.kind == "AverageValue" else 1)
        # Strictly inside the tolerance band (99 % of it), so float rounding cannot leave it.
        values.append(on_target * (1 + r * spec.tolerance * 0.99))
    d = Engine(spec, now=0.0, current=start).decide(
        now=400.0, current=start, running=start, readings=readings_for(spec, values)
    )
    assert d.desired == start and d.recommendation == start


@settings(max_examples=150, deadline=None)
@given(
    spec=specs(),
    start=st.integers(0, 45),
    ticks=st.lists(tick, min_size=1, max_size=30),
    window=st.sampled_from([10, 30, 60]),
    level=st.floats(0, 2000),
    ramp=st.floats(0, 20),
)
def test_a_forecast_only_ever_raises_the_decision(
    spec: PolicySpec, start: int, ticks: list[dict[str, Any]], window: int, level: float, ramp: float
) -> None:
    # The same ticks through the same policy with and without spec.predictive. The replica
    # count follows the ticks' out-of-band changes only (both engines see the same ones), so
    # the two differ in the forecast alone: it may raise the recommendation and the decision,
    # never lower either, and never makes a decision leave [minReplicas, maxReplicas].
    forecasting = spec.model_copy(
        update={"predictive": Predictive(enabled=True, window_seconds=window, min_history_seconds=window / 2)}
    )
    now = 1000.0
    reactive, predictive = Engine(spec, now=now, current=start), Engine(forecasting, now=now, current=start)
    current = start
    for t in ticks:
        dt = min(t["dt"], 15)  # ticks close enough for a window to hold several readings
        now += dt
        changed_at = None
        if t["oob"] is not None and t["oob"] != current:
            current, changed_at = t["oob"], now - dt / 2
        # A rising load with some noise (the tick's value) so forecasts matter; the tick's
        # invalid readings stay invalid.
        values = [
            level + ramp * (now - 1000.0) + v % 50 if isinstance(v, float) and 0 <= v < math.inf else v
            for v in t["values"]
        ]
        readings = readings_for(spec, values)
        running = max(0, current - t["running_gap"])
        hold = "failover in progress" if t["hold"] else None
        args = {"now": now, "current": current, "running": running, "readings": readings}
        r = reactive.decide(**args, changed_at=changed_at, hold_scale_down=hold)
        p = predictive.decide(**args, changed_at=changed_at, hold_scale_down=hold)
        check(forecasting, p, readings, t["hold"])
        assert p.recommendation >= r.recommendation
        assert p.desired >= r.desired, (r.reason, p.reason)
        assert p.panic == r.panic  # a forecast alone neither enters nor extends panic
        if "Forecast" in p.limits:
            assert p.recommendation > r.recommendation
            event("a forecast raised the recommendation")
