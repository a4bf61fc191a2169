"""Panic mode (Knative KPA, adapted): entry, what it skips, and exit after a stable window."""

from __future__ import annotations

from typing import Any

from test_engine import make_spec as engine_spec

from autoscaler.core.decision import MetricReading
from autoscaler.core.engine import Engine
from autoscaler.core.policy import PolicySpec

SLOW_UP = {"stabilizationWindowSeconds": 0, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}
FREE_DOWN = {"stabilizationWindowSeconds": 0}


def make_spec(panic: dict[str, Any] | None = None, **fields: Any) -> PolicySpec:
    return engine_spec(
        panic=panic or {"threshold": 2.0, "stableWindowSeconds": 60},
        **{"behavior": {"scaleUp": SLOW_UP, "scaleDown": FREE_DOWN}, **fields},
    )


def rps(v: float) -> dict[str, MetricReading]:
    return {"rps": MetricReading("rps", v)}


def test_below_threshold_is_not_panic_and_rate_limits_apply() -> None:
    # 4 running, threshold 2: a recommendation of 7 < 8 is an ordinary scale-up.
    d = Engine(make_spec(), now=0, current=4).decide(now=15, current=4, running=4, readings=rps(700))
    assert not d.panic and d.desired == 4 + 1 and "ScaleUpLimit" in d.limits


def test_at_threshold_panics_and_skips_rate_limits() -> None:
    d = Engine(make_spec(), now=0, current=4).decide(now=15, current=4, running=4, readings=rps(800))
    assert d.panic and d.desired == 8 and d.limits == ("Panic",)


def test_panic_skips_the_scale_up_stabilization_window() -> None:
    spec = make_spec(
        behavior={
            "scaleUp": {"stabilizationWindowSeconds": 120, "policies": SLOW_UP["policies"]},
            "scaleDown": FREE_DOWN,
        }
    )
    e = Engine(spec, now=0, current=4)
    d = e.decide(now=15, current=4, running=4, readings=rps(400))
    d = e.decide(now=30, current=4, running=4, readings=rps(2000))
    assert d.panic and d.desired == 20


def test_panic_is_still_capped_by_max_replicas() -> None:
    d = Engine(make_spec(maxReplicas=12), now=0, current=4).decide(
        now=15, current=4, running=4, readings=rps(5000)
    )
    assert d.panic and d.desired == 12 and d.limits == ("Panic", "TooManyReplicas")


def test_threshold_counts_running_tasks_with_at_least_one() -> None:
    # 10 asked, 2 running: 5 >= 2 x 2 is a panic even though 5 < 10, and panic never scales down.
    d = Engine(make_spec(), now=0, current=10).decide(now=15, current=10, running=2, readings=rps(500))
    assert d.panic and d.desired == 10 and "Panic" in d.limits
    # 0 running counts as 1: a recommendation of 2 already panics.
    spec = make_spec(minReplicas=0)
    d = Engine(spec, now=0, current=1).decide(now=15, current=1, running=0, readings=rps(200))
    assert d.panic and d.desired == 2


def test_panic_ends_only_after_a_whole_stable_window_without_the_condition() -> None:
    e = Engine(make_spec(), now=0, current=4)
    d = e.decide(now=15, current=4, running=4, readings=rps(1600))
    assert d.panic and d.desired == 16
    e.record_scale(at=15, from_replicas=4, to_replicas=16)
    # Load collapses: the condition is false from t=30, but the last time it held was t=15.
    for t in (30, 45, 60, 75):
        d = e.decide(now=t, current=16, running=16, readings=rps(100))
        assert d.panic and d.desired == 16, t
        assert f"scale-down suspended for {15 + 60 - t:g}s more" in d.reason
    d = e.decide(now=76, current=16, running=16, readings=rps(100))
    assert not d.panic and d.desired == 1


def test_condition_holding_again_extends_panic() -> None:
    e = Engine(make_spec(), now=0, current=4)
    e.decide(now=15, current=4, running=4, readings=rps(1600))
    e.record_scale(at=15, from_replicas=4, to_replicas=16)
    d = e.decide(now=50, current=16, running=8, readings=rps(1600))  # 16 >= 2 x 8 again
    assert d.panic
    d = e.decide(now=100, current=16, running=16, readings=rps(100))
    assert d.panic and "suspended for 10s more" in d.reason


def test_scale_up_in_panic_mode_without_the_condition_is_rate_limited() -> None:
    e = Engine(make_spec({"threshold": 2.0, "stableWindowSeconds": 120}), now=0, current=4)
    e.decide(now=15, current=4, running=4, readings=rps(800))
    e.record_scale(at=15, from_replicas=4, to_replicas=8)
    d = e.decide(now=90, current=8, running=8, readings=rps(1200))  # 12 < 2 x 8
    assert d.panic and d.desired == 9 and "ScaleUpLimit" in d.limits


def test_disabled_panic_never_panics() -> None:
    d = Engine(make_spec({"enabled": False}), now=0, current=4).decide(
        now=15, current=4, running=4, readings=rps(5000)
    )
    assert not d.panic and d.desired == 5


def test_reload_that_disables_panic_ends_it() -> None:
    e = Engine(make_spec(), now=0, current=4)
    assert e.decide(now=15, current=4, running=4, readings=rps(1600)).panic
    e.record_scale(at=15, from_replicas=4, to_replicas=16)
    e.update_spec(make_spec({"enabled": False}))
    d = e.decide(now=20, current=16, running=16, readings=rps(100))
    assert not d.panic and d.desired == 1


def test_missing_data_does_not_enter_panic() -> None:
    d = Engine(make_spec(), now=0, current=4).decide(
        now=15, current=4, running=4, readings={"rps": MetricReading.missing("rps", "timeout")}
    )
    assert not d.panic and d.desired == 4
