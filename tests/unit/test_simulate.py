"""The simulator's timeline model and scores, checked against hand-worked timelines."""

from __future__ import annotations

from typing import Any

import pytest

from autoscaler.core.policy import PolicySpec
from autoscaler.core.simulate import SimulationConfig, simulate
from autoscaler.core.trace import parse_trace


def spec(**overrides: Any) -> PolicySpec:
    doc: dict[str, Any] = {
        "service": "web",
        "minReplicas": 1,
        "maxReplicas": 10,
        "metrics": [{"name": "rps", "prometheus": {"query": "q"}, "target": {"averageValue": 10}}],
        "panic": {"enabled": False},
    }
    doc.update(overrides)
    return PolicySpec.model_validate(doc)


def test_scale_up_waits_for_startup_and_scores_the_gap() -> None:
    # 1 replica at 10 rps is on target; at t=20 the load quadruples -> 4 replicas, which
    # count as running from t=30. Until then 40 rps exceed 1 x 10: 10 s of overload.
    trace = parse_trace("t,rps\n0,10\n20,40\n60,40\n")
    result = simulate(spec(), trace, SimulationConfig(interval=5, startup_delay=10))
    s = result.summary
    assert s.evaluations == 13  # t = 0, 5, ..., 60
    assert (s.scale_ups, s.scale_downs, s.max_replicas) == (1, 0, 4)
    assert s.replica_seconds == pytest.approx(1 * 20 + 4 * 40)
    assert s.overload_seconds == pytest.approx(10)
    by_t = {step.t: step for step in result.steps}
    assert (by_t[20].ready, by_t[20].decision.desired) == (1, 4)
    assert (by_t[25].ready, by_t[25].starting) == (1, 3)
    assert (by_t[30].ready, by_t[30].starting) == (4, 0)


def test_overload_is_integrated_between_evaluations() -> None:
    # The load rises at t=7, between evaluations at 5 and 10: overload starts at 7, not 10.
    trace = parse_trace("t,rps\n0,10\n7,30\n30,30\n")
    result = simulate(spec(), trace, SimulationConfig(interval=5, startup_delay=0))
    # At t=10 the engine asks for 3 replicas, ready at once (no start-up delay).
    assert result.summary.overload_seconds == pytest.approx(3)


def test_scale_down_cancels_starting_replicas_first() -> None:
    # Up to 8 at t=0 (start-up 100 s), then the load vanishes; with no scale-down window
    # the replicas still starting are cancelled, the one running stays running.
    down = {"scaleDown": {"stabilizationWindowSeconds": 0}}
    trace = parse_trace("t,rps\n0,80\n10,1\n20,1\n")
    policy = spec(behavior=down, minReplicas=1)
    result = simulate(policy, trace, SimulationConfig(interval=5, startup_delay=100, initial_replicas=1))
    by_t = {step.t: step for step in result.steps}
    assert by_t[5].starting > 0
    assert by_t[20].ready == 1
    assert by_t[20].starting == 0


def test_missing_data_never_scales_down() -> None:
    trace = parse_trace("t,rps\n0,50\n30,\n400,\n")
    result = simulate(spec(), trace, SimulationConfig(interval=5, initial_replicas=5))
    assert result.summary.scale_downs == 0
    assert all(step.decision.desired >= 5 for step in result.steps)
    assert "rps" in result.steps[-1].decision.reason


def test_default_capacity_is_the_first_metrics_average_target() -> None:
    trace = parse_trace("t,rps\n0,10\n")
    assert simulate(spec(), trace, SimulationConfig()).summary.capacity == 10
    value_target = spec(
        metrics=[{"name": "rps", "prometheus": {"query": "q"}, "target": {"value": 10}}],
    )
    assert simulate(value_target, trace, SimulationConfig()).summary.capacity is None


@pytest.mark.parametrize("config", [SimulationConfig(interval=0), SimulationConfig(startup_delay=-1)])
def test_bad_config_is_refused(config: SimulationConfig) -> None:
    with pytest.raises(ValueError):
        simulate(spec(), parse_trace("t,rps\n0,1\n"), config)
