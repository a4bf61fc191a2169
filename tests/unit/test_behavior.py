"""HPA ``behavior``: the documentation's examples through the engine, and the parts alone.

Each expected sequence is rebuilt from the sentence of the HPA docs it quotes, with a
fake clock (times are plain numbers), not copied from the engine.
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from test_engine import make_spec as engine_spec
from test_engine import metric

from autoscaler.core.behavior import (
    RatePolicy,
    RecommendationHistory,
    ScaleEvents,
    compile_rules,
    scale_down_limit,
    scale_up_limit,
)
from autoscaler.core.behavior_policy import ScalingRatePolicy, SelectPolicy
from autoscaler.core.decision import Decision, MetricReading
from autoscaler.core.engine import Engine
from autoscaler.core.policy import PolicySpec


def make_spec(behavior: dict[str, Any]) -> PolicySpec:
    return engine_spec([metric("rps", averageValue=1)], maxReplicas=1000, behavior=behavior)


def run(engine: Engine, start: int, load: float, times: list[float]) -> list[int]:
    """Tick at ``times`` with a constant load, scaling as decided; replica count after each."""
    current, seen = start, []
    for t in times:
        d = engine.decide(
            now=t, current=current, running=current, readings={"rps": MetricReading("rps", load)}
        )
        if d.desired != current:
            engine.record_scale(at=t, from_replicas=current, to_replicas=d.desired)
            current = d.desired
        seen.append(current)
    return seen


def run_loads(engine: Engine, start: int, loads: dict[int, float]) -> list[Decision]:
    """Tick at each time of ``loads`` with its load, every decision recorded as a scale."""
    current, decisions = start, []
    for t, load in loads.items():
        d = engine.decide(
            now=t, current=current, running=current, readings={"rps": MetricReading("rps", load)}
        )
        engine.record_scale(at=t, from_replicas=current, to_replicas=d.desired)
        current = d.desired
        decisions.append(d)
    return decisions


# --- the HPA documentation's behavior examples ----------------------------------------


def test_scale_down_4_pods_or_10_percent_per_minute() -> None:
    # Docs: "if there are 80 replicas and the target has to be scaled down to 10 replicas then
    # during the first step 8 replicas will be reduced. In the next iteration when the number
    # of replicas is 72, 10% of the pods is 7.2 but the number is rounded up to 8 ... When the
    # number of replicas falls below 40 the first policy (Pods) is applied and 4 replicas will
    # be reduced at a time."
    behavior = {
        "scaleDown": {
            "stabilizationWindowSeconds": 0,
            "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": 60},
                {"type": "Percent", "value": 10, "periodSeconds": 60},
            ],
        }
    }
    engine = Engine(make_spec(behavior), now=-1000, current=80)
    ticks = [60.0 * k + 1 for k in range(30)]  # one evaluation per period
    seen = run(engine, 80, load=10, times=ticks)
    expected, n = [], 80
    for _ in ticks:
        n = max(10, n - max(4, math.ceil(n * 10 / 100)))
        expected.append(n)
    assert seen == expected
    assert seen[:2] == [72, 64]


def test_scale_down_limit_holds_within_the_period() -> None:
    behavior = {
        "scaleDown": {
            "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Pods", "value": 4, "periodSeconds": 60}],
        }
    }
    engine = Engine(make_spec(behavior), now=-1000, current=40)
    seen = run(engine, 40, load=10, times=[0, 15, 30, 45, 60, 75])
    # 4 removed at t=0; the period (0, 60] counts them until t=60 is past.
    assert seen == [36, 36, 36, 36, 32, 32]


def test_default_scale_up_adds_4_pods_or_100_percent_every_15_seconds() -> None:
    # Docs: "There are 2 policies where 4 pods or a 100% of the currently running replicas
    # will be added every 15 seconds till the HPA reaches its steady state."
    engine = Engine(make_spec({}), now=0, current=1)
    times = [15.0 * k + 1 for k in range(8)]
    seen = run(engine, 1, load=500, times=times)
    expected, n = [], 1
    for _ in times:
        n = min(500, max(n + 4, 2 * n))
        expected.append(n)
    assert seen == expected


def test_scale_up_limited_to_900_percent_per_minute() -> None:
    # Docs: "value: 900 ... if the current number of replicas is 10, a scale up of 900% means 90
    # more replicas can be added in 60 seconds" -- i.e. 10 becomes at most 100.
    behavior = {"scaleUp": {"policies": [{"type": "Percent", "value": 900, "periodSeconds": 60}]}}
    engine = Engine(make_spec(behavior), now=0, current=10)
    assert run(engine, 10, load=5000, times=[1, 20, 40, 61.5]) == [100, 100, 100, 1000]


def test_scale_down_disabled() -> None:
    behavior = {"scaleDown": {"selectPolicy": "Disabled"}}
    engine = Engine(make_spec(behavior), now=0, current=20)
    d = engine.decide(now=3600, current=20, running=20, readings={"rps": MetricReading("rps", 1)})
    assert d.desired == 20 and "ScaleDownLimit" in d.limits and "selectPolicy Disabled" in d.reason


def test_stabilization_window_uses_the_highest_recommendation() -> None:
    # Docs: "the algorithm looks into previously computed desired states, and uses the highest
    # value from the specified interval."
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 60}}
    engine = Engine(make_spec(behavior), now=-1000, current=10)
    loads = {0: 10, 15: 6, 30: 8, 45: 3, 60: 3, 75: 3, 90: 3, 105: 3}
    seen = [d.desired for d in run_loads(engine, 10, loads)]
    # highest recommendation within (t - 60, t]
    expected = [max(v for u, v in loads.items() if t - 60 < u <= t) for t in loads]
    assert seen == expected


def test_select_policy_min_takes_the_smallest_change() -> None:
    behavior = {
        "scaleUp": {
            "selectPolicy": "Min",
            "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15},
            ],
        }
    }
    engine = Engine(make_spec(behavior), now=0, current=10)
    d = engine.decide(now=1, current=10, running=10, readings={"rps": MetricReading("rps", 100)})
    assert d.desired == 10 + 4 and "ScaleUpLimit" in d.limits and "Pods" not in d.reason
    assert "Replicas 4/15s" in d.reason


# --- the pieces alone ----------------------------------------------------------------


def test_rate_policy_limits_are_exact_integers() -> None:
    pct = RatePolicy(percent=True, value=10, period=60)
    assert pct.up_limit(10) == 11  # float64 would give ceil(11.000000000000002) = 12
    assert pct.down_limit(72) == 64  # floor(64.8)
    assert RatePolicy(percent=True, value=100, period=15).up_limit(0) == 0
    assert RatePolicy(percent=False, value=4, period=15).down_limit(3) == -1  # min/max clamp later


def test_period_start_counts_only_events_strictly_inside_the_period() -> None:
    events = ScaleEvents(keep_seconds=60)
    events.record(0, 4, 8)
    events.record(30, 8, 6)
    assert events.period_start(6, now=59, period=60) == 6 - 4 + 2
    assert events.period_start(6, now=60, period=60) == 6 + 2  # the t=0 event is out at exactly 60
    events.prune(85)
    assert events.up == [] and events.down == [(30, 2)]


@pytest.mark.parametrize("select", [SelectPolicy.MAX, SelectPolicy.MIN])
def test_limits_pick_by_select_policy(select: SelectPolicy) -> None:
    policies = (
        ScalingRatePolicy(type="Pods", value=4, period_seconds=15),  # type: ignore[arg-type]
        ScalingRatePolicy(type="Percent", value=50, period_seconds=15),  # type: ignore[arg-type]
    )
    rules = compile_rules(0, select, policies)
    events = ScaleEvents(15)
    pick = max if select is SelectPolicy.MAX else min
    assert scale_up_limit(20, 0, events, rules)[0] == pick(20 + 4, 30)
    down_pick = min if select is SelectPolicy.MAX else max
    assert scale_down_limit(20, 0, events, rules)[0] == down_pick(20 - 4, 10)


def test_up_limit_never_below_current_after_a_burst() -> None:
    rules = compile_rules(0, SelectPolicy.MAX, (ScalingRatePolicy(type="Pods", value=2, period_seconds=60),))  # type: ignore[arg-type]
    events = ScaleEvents(60)
    events.record(0, 2, 10)  # out-of-band +8 inside the period: start is 2, limit 4 < 10
    assert scale_up_limit(10, 30, events, rules)[0] == 10


@pytest.mark.parametrize("highest", [30, 2])  # 2: long runs of equal recommendations
def test_history_matches_a_brute_force_window_scan(highest: int) -> None:
    rng = random.Random(7)
    hist = RecommendationHistory(up_window=45, down_window=120)
    records: list[tuple[float, int]] = []
    t = 0.0
    for _ in range(400):
        t += rng.choice([1, 5, 15, 15, 30])
        if rng.random() < 0.1 and records:  # an out-of-band record stamped in the past
            past = t - rng.uniform(0, 60)
            r = rng.randint(0, highest)
            hist.add(past, r)
            records.append((past, r))
        desired = rng.randint(0, highest)
        up, down = hist.add_and_bounds(t, desired)
        records.append((t, desired))
        assert up == min(r for at, r in records if at > t - 45 or at == t)
        assert down == max(r for at, r in records if at > t - 120 or at == t)


def test_history_keeps_records_for_a_longer_window_after_reload() -> None:
    hist = RecommendationHistory(up_window=0, down_window=100)
    hist.add(0, 9)
    hist.add_and_bounds(50, 2)
    hist.set_windows(0, 300)
    assert hist.add_and_bounds(90, 1) == (1, 9)
    assert len(hist) == 3


def test_a_steady_recommendation_is_kept_as_one_record() -> None:
    hist = RecommendationHistory(up_window=0, down_window=300)
    hist.add(0, 4)
    for t in range(5, 3600, 5):
        assert hist.add_and_bounds(t, 4) == (4, 4)
    assert len(hist) == 1
    assert hist.add_and_bounds(3605, 2) == (2, 4)  # the run of 4s is still in the down window


def test_clock_going_backwards_drops_records_from_the_future() -> None:
    hist = RecommendationHistory(up_window=0, down_window=300)
    for t, r in ((100, 9), (200, 7), (300, 5)):
        hist.add_and_bounds(t, r)
    # Back to t=150: only the record at 100 can still be placed in a window.
    assert hist.add_and_bounds(150, 2) == (2, 9)
    assert len(hist) == 2
    assert hist.add_and_bounds(160, 3) == (3, 9)


def test_scale_up_stabilization_uses_the_lowest_recommendation() -> None:
    behavior = {"scaleUp": {"stabilizationWindowSeconds": 60}, "scaleDown": {"stabilizationWindowSeconds": 0}}
    engine = Engine(make_spec(behavior), now=-1000, current=4)
    loads = {0: 4, 15: 9, 30: 7, 45: 12, 60: 12, 75: 12}
    decisions = run_loads(engine, 4, loads)
    seen = [d.desired for d in decisions]
    assert all("ScaleUpStabilized" in d.limits for d in decisions if d.desired < d.recommendation)
    # lowest recommendation within (t - 60, t]; the default scale-up policies allow each step
    expected = [min(v for u, v in loads.items() if t - 60 < u <= t) for t in loads]
    assert seen == expected
