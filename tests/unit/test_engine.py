"""Engine.decide against the Kubernetes HPA documentation and the project's own rules.

Expected numbers are derived in each test from the rule it checks (the HPA docs'
formula, the policy's numbers), never copied from the engine's output.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from autoscaler.core.decision import Direction, MetricReading
from autoscaler.core.engine import Engine
from autoscaler.core.policy import PolicySpec

# Behavior that gets out of the way, so a test sees the rule it is about.
UNLIMITED = {
    "scaleUp": {
        "stabilizationWindowSeconds": 0,
        "policies": [{"type": "Percent", "value": 1000, "periodSeconds": 1}],
    },
    "scaleDown": {
        "stabilizationWindowSeconds": 0,
        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 1}],
    },
}


def make_spec(metrics: list[dict[str, Any]] | None = None, **fields: Any) -> PolicySpec:
    doc: dict[str, Any] = {
        "service": "web",
        "minReplicas": 1,
        "maxReplicas": 100,
        "metrics": metrics
        or [{"name": "rps", "prometheus": {"query": "q"}, "target": {"averageValue": 100}}],
        "panic": {"enabled": False},
        "behavior": UNLIMITED,
    }
    doc.update(fields)
    return PolicySpec.model_validate(doc)


def metric(name: str, **target: float) -> dict[str, Any]:
    return {"name": name, "prometheus": {"query": "q"}, "target": target}


def read(**values: float | None) -> dict[str, MetricReading]:
    return {
        n: MetricReading(n, v) if v is not None else MetricReading.missing(n, "no data")
        for n, v in values.items()
    }


# --- target tracking (HPA docs: "Algorithm details") ----------------------------------


@pytest.mark.parametrize("running", [1, 3, 4, 10])
def test_value_target_doubles_at_200m_vs_100m_and_halves_at_50m(running: int) -> None:
    spec = make_spec([metric("cpu", value=0.1)])
    up = Engine(spec, now=0, current=running).decide(
        now=15, current=running, running=running, readings=read(cpu=0.2)
    )
    # HPA docs: 200m against 100m doubles the replicas; 50m halves them (rounded up).
    assert up.desired == 2 * running
    down = Engine(spec, now=0, current=running).decide(
        now=15, current=running, running=running, readings=read(cpu=0.05)
    )
    assert down.desired == (running + 1) // 2


def test_average_value_target_asks_for_total_over_per_replica_target() -> None:
    spec = make_spec()
    d = Engine(spec, now=0, current=4).decide(now=15, current=4, running=4, readings=read(rps=1050))
    assert d.recommendation == math.ceil(1050 / 100)
    assert d.desired == d.recommendation
    assert d.metrics[0].desired == d.recommendation


@pytest.mark.parametrize("ratio", [0.91, 0.95, 1.0, 1.05, 1.09])
def test_within_tolerance_keeps_current(ratio: float) -> None:
    spec = make_spec()
    running = 10
    d = Engine(spec, now=0, current=running).decide(
        now=15, current=running, running=running, readings=read(rps=ratio * 100 * running)
    )
    assert d.desired == running and d.direction is Direction.NONE
    assert "within tolerance" in d.reason


@pytest.mark.parametrize("ratio", [0.85, 1.15, 1.5])
def test_outside_tolerance_scales(ratio: float) -> None:
    running = 10
    d = Engine(make_spec(), now=0, current=running).decide(
        now=15, current=running, running=running, readings=read(rps=ratio * 100 * running)
    )
    assert d.desired == math.ceil(ratio * running)


def test_tolerance_is_configurable() -> None:
    spec = make_spec(tolerance=0.2)
    d = Engine(spec, now=0, current=10).decide(now=15, current=10, running=10, readings=read(rps=1150))
    assert d.desired == 10


def test_average_divides_by_running_not_spec_replicas() -> None:
    # 8 asked for, 4 running: per-replica load is value / 4.
    d = Engine(make_spec(), now=0, current=8).decide(now=15, current=8, running=4, readings=read(rps=800))
    assert "200 per replica" in d.reason
    assert d.recommendation == 8  # ceil(800 / 100): the total load still needs 8


def test_zero_running_uses_value_over_target_for_both_kinds() -> None:
    for target in ({"averageValue": 100}, {"value": 100}):
        spec = make_spec([{"name": "rps", "prometheus": {"query": "q"}, "target": target}], minReplicas=0)
        d = Engine(spec, now=0, current=2).decide(now=15, current=2, running=0, readings=read(rps=450))
        assert d.recommendation == math.ceil(450 / 100), target


def test_several_metrics_largest_wins() -> None:
    spec = make_spec([metric("rps", averageValue=100), metric("latency", value=0.2)])
    d = Engine(spec, now=0, current=4).decide(
        now=15, current=4, running=4, readings=read(rps=500, latency=0.6)
    )
    by_name = {m.name: m.desired for m in d.metrics}
    assert by_name == {"rps": math.ceil(500 / 100), "latency": math.ceil(4 * 0.6 / 0.2)}
    assert d.desired == max(by_name.values())
    assert "largest: latency" in d.reason


# --- missing data (HPA >= 1.21: never scale down on missing metrics) ------------------


def test_all_metrics_missing_keeps_current() -> None:
    d = Engine(make_spec(), now=0, current=6).decide(
        now=15, current=6, running=6, readings={"rps": MetricReading.missing("rps", "connection refused")}
    )
    assert d.desired == 6
    assert "MissingMetrics" in d.limits
    assert "rps: no reading (connection refused)" in d.reason


def test_absent_reading_counts_as_missing() -> None:
    d = Engine(make_spec(), now=0, current=6).decide(now=15, current=6, running=6, readings={})
    assert d.desired == 6 and "no reading (no reading)" in d.reason


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -1.0])
def test_invalid_values_are_missing(bad: float) -> None:
    d = Engine(make_spec(), now=0, current=6).decide(now=15, current=6, running=6, readings=read(rps=bad))
    assert d.desired == 6 and d.metrics[0].desired is None and "MissingMetrics" in d.limits


def test_missing_metric_blocks_scale_down_of_the_others() -> None:
    spec = make_spec([metric("rps", averageValue=100), metric("queue", value=10)])
    d = Engine(spec, now=0, current=6).decide(
        now=15, current=6, running=6, readings=read(rps=100, queue=None)
    )
    assert d.desired == 6
    assert "MissingMetrics" in d.limits and "queue: no reading" in d.reason


def test_missing_metric_does_not_block_scale_up_of_the_others() -> None:
    spec = make_spec([metric("rps", averageValue=100), metric("queue", value=10)])
    d = Engine(spec, now=0, current=2).decide(
        now=15, current=2, running=2, readings=read(rps=700, queue=None)
    )
    assert d.desired == 7
    assert "MissingMetrics" not in d.limits and "queue: no reading" in d.reason


# --- min / max and HPA's out-of-range rules ------------------------------------------


def test_recommendation_above_max_is_capped() -> None:
    d = Engine(make_spec(maxReplicas=5), now=0, current=2).decide(
        now=15, current=2, running=2, readings=read(rps=5000)
    )
    assert d.recommendation == 50 and d.desired == 5 and "TooManyReplicas" in d.limits


def test_recommendation_below_min_is_raised() -> None:
    d = Engine(make_spec(minReplicas=3), now=0, current=6).decide(
        now=15, current=6, running=6, readings=read(rps=10)
    )
    assert d.desired == 3 and "TooFewReplicas" in d.limits


def test_current_above_max_goes_to_max_even_without_metrics() -> None:
    d = Engine(make_spec(maxReplicas=5), now=0, current=9).decide(now=15, current=9, running=9, readings={})
    assert d.desired == 5 and "TooManyReplicas" in d.limits


def test_current_below_min_goes_to_min_even_without_metrics() -> None:
    d = Engine(make_spec(minReplicas=3), now=0, current=1).decide(now=15, current=1, running=1, readings={})
    assert d.desired == 3 and "TooFewReplicas" in d.limits


def test_zero_replicas_with_positive_min_means_autoscaling_is_off() -> None:
    d = Engine(make_spec(minReplicas=1), now=0, current=0).decide(
        now=15, current=0, running=0, readings=read(rps=900)
    )
    assert d.desired == 0 and "ScalingDisabled" in d.limits and "scale the service up to resume" in d.reason


def test_scale_from_zero_when_min_is_zero_uses_the_replicas_policy() -> None:
    spec = make_spec(minReplicas=0, behavior={})  # HPA defaults: +4 replicas or +100 % per 15 s
    d = Engine(spec, now=0, current=0).decide(now=15, current=0, running=0, readings=read(rps=250))
    assert d.desired == math.ceil(250 / 100)


def test_percent_policy_alone_cannot_grow_from_zero_as_in_hpa() -> None:
    # 0 x (1 + 1000 %) is still 0; HPA has no special case, so we say how to fix the policy.
    d = Engine(make_spec(minReplicas=0), now=0, current=0).decide(
        now=15, current=0, running=0, readings=read(rps=250)
    )
    assert d.desired == 0 and "ScaleUpLimit" in d.limits and "add a Replicas policy" in d.reason


# --- out-of-band changes -------------------------------------------------------------


def test_out_of_band_change_counts_against_rate_limits_and_is_reported() -> None:
    behavior = {"scaleUp": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]}}
    e = Engine(make_spec(behavior=behavior), now=0, current=4)
    e.decide(now=10, current=4, running=4, readings=read(rps=400))
    # Someone scaled 4 -> 6 at t=20: the 60 s period already used its +2.
    d = e.decide(now=30, current=6, running=6, readings=read(rps=1000), changed_at=20)
    assert "out of band from 4 to 6 at t=20s" in d.reason
    assert d.desired == 6 and "ScaleUpLimit" in d.limits
    # After the period (strictly more than 60 s after t=20) two more are allowed.
    d = e.decide(now=81, current=6, running=6, readings=read(rps=1000))
    assert d.desired == 6 + 2


def test_out_of_band_change_restarts_scale_down_stabilization() -> None:
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 300}}
    e = Engine(make_spec(behavior=behavior), now=0, current=4)
    e.decide(now=400, current=4, running=4, readings=read(rps=400))
    d = e.decide(now=500, current=8, running=8, readings=read(rps=100), changed_at=450)
    assert d.desired == 8 and "ScaleDownStabilized" in d.limits
    d = e.decide(now=749, current=8, running=8, readings=read(rps=100))
    assert d.desired == 8  # the manual 8 at 450 is inside (449, 749]
    d = e.decide(now=750, current=8, running=8, readings=read(rps=100))
    assert d.desired == 1  # HPA counts a record while t > now - window: 450 > 450 is false


def test_own_scale_is_not_out_of_band() -> None:
    e = Engine(make_spec(), now=0, current=2)
    d = e.decide(now=15, current=2, running=2, readings=read(rps=500))
    e.record_scale(at=15, from_replicas=2, to_replicas=d.desired)
    d2 = e.decide(now=30, current=d.desired, running=d.desired, readings=read(rps=500))
    assert "out of band" not in d2.reason


def test_failed_scale_is_not_out_of_band() -> None:
    e = Engine(make_spec(), now=0, current=2)
    e.decide(now=15, current=2, running=2, readings=read(rps=500))  # scale call failed: no record_scale
    assert "out of band" not in e.decide(now=30, current=2, running=2, readings=read(rps=500)).reason


def test_changed_at_in_the_future_is_taken_as_now() -> None:
    now = 1_800_000_100.0
    e = Engine(make_spec(), now=now - 100, current=2)
    d = e.decide(now=now, current=5, running=5, readings=read(rps=500), changed_at=now + 800)
    stamp = datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"out of band from 2 to 5 at {stamp}" in d.reason


# --- hold and start-up --------------------------------------------------------------


def test_hold_blocks_scale_down_but_not_scale_up() -> None:
    why = "failover in progress: 2 replacements unconfirmed"
    e = Engine(make_spec(), now=0, current=6)
    d = e.decide(now=15, current=6, running=6, readings=read(rps=100), hold_scale_down=why)
    assert d.desired == 6 and "Hold" in d.limits and why in d.reason
    d = e.decide(now=30, current=6, running=6, readings=read(rps=900), hold_scale_down=why)
    assert d.desired == 9


def test_hold_blocks_the_max_clamp_too() -> None:
    d = Engine(make_spec(maxReplicas=5), now=0, current=9).decide(
        now=15, current=9, running=9, readings={}, hold_scale_down="failover"
    )
    assert d.desired == 9 and "Hold" in d.limits


def test_no_scale_down_until_a_full_window_after_start() -> None:
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 300}}
    e = Engine(make_spec(behavior=behavior, minReplicas=8), now=1000, current=3)
    d = e.decide(now=1010, current=3, running=3, readings=read(rps=100))
    assert d.desired == 8 and "TooFewReplicas" in d.limits
    e.record_scale(at=1010, from_replicas=3, to_replicas=8)
    e.update_spec(make_spec(behavior=behavior, minReplicas=1))
    # The history holds only the start size 3 and low recommendations: HPA's stabilization
    # alone would allow 8 -> 3 now; the start-up guard waits for a whole window.
    d = e.decide(now=1042, current=8, running=8, readings=read(rps=100))
    assert d.desired == 8 and "controller started 42s ago, scale-down needs a full 300s window" in d.reason
    assert d.limits.count("ScaleDownStabilized") == 1


def test_reload_keeps_rate_limit_events_and_applies_the_new_rules() -> None:
    slow = {"scaleUp": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]}}
    e = Engine(make_spec(behavior=slow), now=0, current=2)
    d = e.decide(now=10, current=2, running=2, readings=read(rps=1000))
    assert d.desired == 4
    e.record_scale(at=10, from_replicas=2, to_replicas=4)
    e.update_spec(make_spec(behavior=slow, maxReplicas=20))
    # The +2 at t=10 still fills the 60 s period after the reload.
    assert e.decide(now=30, current=4, running=4, readings=read(rps=1000)).desired == 4
    assert e.spec.max_replicas == 20


def test_missing_metric_with_the_others_on_target_is_an_ordinary_no_change() -> None:
    # HPA only refuses when the valid metrics would scale down; on target it proceeds.
    spec = make_spec([metric("rps", averageValue=100), metric("queue", value=10)])
    d = Engine(spec, now=0, current=4).decide(
        now=15, current=4, running=4, readings=read(rps=400, queue=None)
    )
    assert d.desired == 4 and d.recommendation == 4 and "MissingMetrics" not in d.limits
    assert "queue: no reading" in d.reason
