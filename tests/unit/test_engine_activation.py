"""Activation from zero: activationValue decides 0 <-> 1 (KEDA), with a grace before 0."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_engine import make_spec, read

from autoscaler.core.decision import MetricReading
from autoscaler.core.engine import Engine

GRACE = 30


def spec_with(activation: float = 0.5, empty_as: str = "missing", **fields: Any) -> Any:
    rps = {
        "name": "rps",
        "prometheus": {"query": "q"},
        "target": {"averageValue": 10},
        "activationValue": activation,
        "emptyAs": empty_as,
    }
    fields.setdefault("scaleToZeroAfterSeconds", GRACE)
    return make_spec(metrics=[rps], minReplicas=0, **fields)


def run(
    engine: Engine, steps: list[tuple[float, MetricReading]], current: int
) -> list[tuple[float, int, int]]:
    """(t, from, to) of every evaluation, applying each decision as the reconciler does."""
    out = []
    for t, reading in steps:
        d = engine.decide(now=t, current=current, running=current, readings={"rps": reading})
        out.append((t, current, d.desired))
        if d.desired != current:
            engine.record_scale(at=t, from_replicas=current, to_replicas=d.desired)
            current = d.desired
    return out


def rps(value: float) -> MetricReading:
    return MetricReading("rps", value)


# KEDA's docs ("Activating and Scaling thresholds"): activation is value > activationThreshold,
# 0 -> 1 is the activation's, 1 -> N the HPA's.
def test_wakes_only_above_the_activation_value() -> None:
    engine = Engine(spec_with(activation=5), now=0.0, current=0)
    assert run(engine, [(0, rps(5.0)), (15, rps(5.1))], 0) == [(0, 0, 0), (15, 0, 1)]


def test_waking_goes_to_one_then_target_tracking_takes_over() -> None:
    engine = Engine(spec_with(), now=0.0, current=0)
    steps = run(engine, [(0, rps(55.0)), (15, rps(55.0))], 0)
    assert steps == [(0, 0, 1), (15, 1, 6)]  # ceil(55 / 10) = 6 once there is a replica


def test_back_to_zero_only_after_the_grace_below_the_activation_value() -> None:
    engine = Engine(spec_with(), now=0.0, current=0)
    steps = run(engine, [(0, rps(3.0)), (10, rps(0.0)), (20, rps(0.0)), (39, rps(0.0)), (40, rps(0.0))], 0)
    assert [s[2] for s in steps] == [1, 1, 1, 1, 0]  # last active at t=0; 40 - 0 >= 30


def test_target_tracking_alone_never_reaches_zero() -> None:
    engine = Engine(spec_with(activation=0.5), now=0.0, current=3)
    d = engine.decide(now=5.0, current=3, running=3, readings=read(rps=0.2))  # idle, inside the grace
    assert d.desired == 1 and "idle for 5s of scaleToZeroAfterSeconds 30" in d.reason


def test_missing_data_neither_wakes_nor_lets_it_sleep() -> None:
    down = MetricReading.missing("rps", "prometheus: connection refused")
    at_zero = Engine(spec_with(), now=0.0, current=0)
    assert run(at_zero, [(0, down), (100, down)], 0) == [(0, 0, 0), (100, 0, 0)]
    at_one = Engine(spec_with(), now=0.0, current=1)
    assert [s[2] for s in run(at_one, [(t, down) for t in range(0, 200, 20)], 1)] == [1] * 10


def test_empty_as_zero_lets_a_quiet_service_reach_zero() -> None:
    engine = Engine(spec_with(empty_as="zero"), now=0.0, current=1)
    d = engine.decide(now=GRACE, current=1, running=1, readings={"rps": MetricReading.empty("rps")})
    assert d.desired == 0 and d.limits == ("ScaleToZero",)
    assert "no series, read as 0 (emptyAs: zero)" in d.reason
    missing = Engine(spec_with(empty_as="missing"), now=0.0, current=1)
    kept = missing.decide(now=GRACE, current=1, running=1, readings={"rps": MetricReading.empty("rps")})
    assert kept.desired == 1


def test_a_hand_wake_restarts_the_grace() -> None:
    engine = Engine(spec_with(), now=0.0, current=0)
    run(engine, [(0, rps(0.0)), (100, rps(0.0))], 0)
    # An operator scales to 2 at t=200 while the metric is still idle.
    d = engine.decide(now=200.0, current=2, running=2, readings={"rps": rps(0.0)}, changed_at=200.0)
    assert d.desired == 1  # target tracking (floor 1), not straight back to 0


def test_failover_hold_keeps_it_from_zero() -> None:
    engine = Engine(spec_with(), now=0.0, current=1)
    d = engine.decide(
        now=100.0, current=1, running=1, readings={"rps": rps(0.0)}, hold_scale_down="node down"
    )
    assert d.desired == 1 and "no scale to zero: node down" in d.reason


def test_without_activation_values_min_zero_works_as_before() -> None:
    engine = Engine(make_spec(minReplicas=0), now=0.0, current=2)
    assert engine.decide(now=1000.0, current=2, running=2, readings=read(rps=0.0)).desired == 0


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.floats(min_value=0, max_value=50, allow_nan=False)), max_size=40),
    gaps=st.lists(st.integers(1, 20), min_size=40, max_size=40),
    start=st.integers(0, 3),
)
def test_never_flaps_between_zero_and_one_inside_the_grace(
    values: list[float | None], gaps: list[int], start: int
) -> None:
    """After the service leaves 0, it does not go back to 0 before the grace has passed."""
    engine = Engine(spec_with(activation=1.0), now=0.0, current=start)
    current = start
    left_zero_at = 0.0  # the engine's start counts as activity
    t = 0.0
    for value, gap in zip(values, gaps, strict=False):
        t += gap
        reading = MetricReading.missing("rps", "down") if value is None else rps(value)
        d = engine.decide(now=t, current=current, running=current, readings={"rps": reading})
        if current == 0 and d.desired > 0:
            left_zero_at = t
        if current > 0 and d.desired == 0:
            assert t - left_zero_at >= GRACE, d.reason
        if d.desired != current:
            engine.record_scale(at=t, from_replicas=current, to_replicas=d.desired)
            current = d.desired


def test_a_static_fallback_may_wake_a_service_whose_activation_metric_fails() -> None:
    grow_from_zero = {"scaleUp": {"policies": [{"type": "Replicas", "value": 4, "periodSeconds": 15}]}}
    spec = spec_with(
        fallback={"failureThreshold": 1, "replicas": 2, "behavior": "static"}, behavior=grow_from_zero
    )
    engine = Engine(spec, now=0.0, current=0)
    down = MetricReading.missing("rps", "prometheus: connection refused")
    assert [s[2] for s in run(engine, [(0, down), (15, down)], 0)] == [0, 2]


def test_activity_while_a_schedule_holds_the_floor_counts_for_the_grace() -> None:
    window = {"name": "w", "start": "0 8 * * *", "end": "0 9 * * *", "minReplicas": 3}
    engine = Engine(spec_with(schedules=[window]), now=0.0, current=3)
    eight = 1_795_766_400.0  # 2026-11-27T08:00:00Z
    for t in range(0, 3600, 10):  # active all through the window, the last time at 3590 s
        engine.decide(now=t, current=3, running=3, readings={"rps": rps(20.0)}, wall_time=eight + t)
    d = engine.decide(now=3600, current=3, running=3, readings={"rps": rps(0.0)}, wall_time=eight + 3600)
    assert d.desired == 1  # idle for one tick only: not straight to 0
