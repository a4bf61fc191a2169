"""spec.fallback (KEDA's): the documented examples, the threshold, and the no-scale-down rule."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_engine import make_spec, metric, read

from autoscaler.core.decision import MetricReading
from autoscaler.core.engine import Engine

DOWN = MetricReading.missing("rps", "prometheus: connection refused")


def spec_with(kind: str | None = None, *, threshold: int = 3, replicas: int = 6, **fields: Any) -> Any:
    """A policy whose fallback has ``behavior: kind`` (None: the default)."""
    fallback: dict[str, Any] = {"failureThreshold": threshold, "replicas": replicas}
    if kind is not None:
        fallback["behavior"] = kind
    return make_spec(fallback=fallback, **fields)


def fail_times(engine: Engine, times: int, *, current: int, start: float = 0.0) -> list[int]:
    """Desired counts of ``times`` evaluations 15 s apart with Prometheus refusing connections."""
    return [
        engine.decide(now=start + 15.0 * i, current=current, running=current, readings={"rps": DOWN}).desired
        for i in range(times)
    ]


# KEDA's docs (reference/scaledobject-spec, "fallback.behavior"), one example per behavior:
# Prometheus unavailable 3 times in a row, then the count each behavior asks for.
@pytest.mark.parametrize(
    ("behavior", "replicas", "current", "expected"),
    [
        ("static", 6, 2, 6),  # "scale the deployment to 6 replicas when fallback.replicas is 6"
        ("currentReplicas", 2, 6, 6),  # "to 6 replicas when the current replicas are 6"
        ("currentReplicasIfHigher", 3, 6, 6),  # fallback 3, current 6 -> 6
        ("currentReplicasIfHigher", 6, 3, 6),  # fallback 6, current 3 -> 6
        ("currentReplicasIfLower", 6, 3, 3),  # "to 3 replicas when fallback 6, current 3"
    ],
)
def test_keda_documented_behaviors(behavior: str, replicas: int, current: int, expected: int) -> None:
    engine = Engine(spec_with(behavior, replicas=replicas), now=0.0, current=current)
    desired = fail_times(engine, 4, current=current)
    assert desired[:3] == [current] * 3  # failureThreshold 3 failures hold, as without fallback
    assert desired[3] == expected  # the 4th passes the threshold (KEDA: failures > threshold)


def test_until_the_threshold_is_passed_the_reason_counts_the_failures() -> None:
    engine = Engine(spec_with("static"), now=0.0, current=2)
    d = engine.decide(now=0.0, current=2, running=2, readings={"rps": DOWN})
    assert "MissingMetrics" in d.limits and "rps failed 1 in a row" in d.reason
    assert "failureThreshold 3" in d.reason


def test_fallback_state_is_in_limits_and_reason() -> None:
    engine = Engine(spec_with("static"), now=0.0, current=2)
    fail_times(engine, 3, current=2)
    d = engine.decide(now=45.0, current=2, running=2, readings={"rps": DOWN})
    assert d.limits[0] == "Fallback" and d.desired == 6
    assert "Fallback: rps failed 4 in a row (more than failureThreshold 3)" in d.reason
    assert "behavior static -> fallback replicas 6" in d.reason


def test_a_good_read_resets_the_count() -> None:
    engine = Engine(spec_with("static"), now=0.0, current=2)
    fail_times(engine, 3, current=2)
    engine.decide(now=45.0, current=2, running=2, readings=read(rps=200.0))
    assert fail_times(engine, 3, current=2, start=60.0) == [2, 2, 2]


def test_if_lower_never_scales_down_missing_data_being_the_only_cause() -> None:
    engine = Engine(spec_with("currentReplicasIfLower", replicas=3), now=0.0, current=8)
    assert fail_times(engine, 5, current=8)[-1] == 8
    d = engine.decide(now=100.0, current=8, running=8, readings={"rps": DOWN})
    assert "would go to 3" in d.reason and "unless behavior is static" in d.reason


def test_static_scales_down_through_behavior_like_any_recommendation() -> None:
    spec = spec_with("static", replicas=3, behavior={"scaleDown": {"stabilizationWindowSeconds": 60}})
    engine = Engine(spec, now=0.0, current=8)
    desired = fail_times(engine, 8, current=8)  # t = 0..105 s
    assert desired[:4] == [8] * 4  # threshold, then the 60 s start-up guard/stabilization
    assert desired[-1] == 3  # once the 60 s start-up guard and scale-down window have passed


def test_fallback_competes_with_the_metrics_that_still_read() -> None:
    spec = spec_with(
        "static", replicas=6, metrics=[metric("rps", averageValue=100), metric("queue", value=10)]
    )
    engine = Engine(spec, now=0.0, current=2)
    readings = {"rps": DOWN, "queue": MetricReading("queue", 50.0)}  # queue alone: ceil(2 x 5) = 10
    for i in range(4):
        d = engine.decide(now=15.0 * i, current=2, running=2, readings=readings)
    assert "Fallback" in d.limits and d.desired == 10  # not pinned to 6 (KEDA #6659)


def test_no_panic_on_a_fallback_count() -> None:
    spec = spec_with("static", replicas=20, panic={"enabled": True, "threshold": 2.0})
    engine = Engine(spec, now=0.0, current=2)
    fail_times(engine, 3, current=2)
    d = engine.decide(now=45.0, current=2, running=2, readings={"rps": DOWN})
    assert d.recommendation == 20 and not d.panic


def test_hot_reload_keeps_the_counts_of_metrics_still_there() -> None:
    engine = Engine(spec_with("static"), now=0.0, current=2)
    fail_times(engine, 3, current=2)
    engine.update_spec(spec_with("static", replicas=5))
    assert engine.decide(now=45.0, current=2, running=2, readings={"rps": DOWN}).desired == 5


readings_seq = st.lists(
    st.one_of(st.none(), st.floats(min_value=0, max_value=5000, allow_nan=False)), min_size=1, max_size=30
)
NON_STATIC = ["currentReplicas", "currentReplicasIfHigher", "currentReplicasIfLower"]


@settings(max_examples=150, deadline=None)
@given(
    values=readings_seq,
    behavior=st.sampled_from(NON_STATIC),
    threshold=st.integers(1, 4),
    replicas=st.integers(0, 30),
    start=st.integers(1, 30),
)
def test_fallback_never_scales_down_on_missing_data_unless_static(
    values: list[float | None], behavior: str, threshold: int, replicas: int, start: int
) -> None:
    """Whenever the reading is missing, a non-static fallback never lowers the count."""
    spec = spec_with(behavior, threshold=threshold, replicas=replicas, maxReplicas=30)
    engine = Engine(spec, now=0.0, current=start)
    current = start
    for i, value in enumerate(values):
        readings = {"rps": DOWN} if value is None else read(rps=value)
        d = engine.decide(now=15.0 * i, current=current, running=current, readings=readings)
        if value is None:
            assert d.desired >= current, d.reason
        if d.desired != current:
            engine.record_scale(at=15.0 * i, from_replicas=current, to_replicas=d.desired)
            current = d.desired
