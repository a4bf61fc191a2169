"""Checking forecasts at their due time (core/forecast_claims.py) and taking back wrong ones.

Expected counts come from the loads each test builds (load / target per replica), never
from the engine's own output.
"""

from __future__ import annotations

import math
from typing import Any

from autoscaler.core.behavior import RecommendationHistory
from autoscaler.core.decision import Decision, MetricReading
from autoscaler.core.engine import Engine
from autoscaler.core.forecast_claims import ForecastClaims
from autoscaler.core.policy import PolicySpec
from autoscaler.core.tolerance import Tolerances
from autoscaler.core.tracking import MetricTracker

TARGET = 100.0  # per replica


def spec(predictive: dict[str, Any] | None) -> PolicySpec:
    doc: dict[str, Any] = {
        "service": "web",
        "minReplicas": 1,
        "maxReplicas": 100,
        "metrics": [{"name": "rps", "prometheus": {"query": "q"}, "target": {"averageValue": TARGET}}],
        "panic": {"enabled": False},
    }
    if predictive is not None:
        doc["predictive"] = predictive
    return PolicySpec.model_validate(doc)  # behavior at its defaults: 300 s scale-down window


def run(loads: dict[int, float], predictive: dict[str, Any] | None) -> list[Decision]:
    """Decide every 5 s on ``loads`` (t -> rps); replicas start at once (running = current)."""
    engine = Engine(spec(predictive), now=-1000.0, current=10)  # past the start-up guard
    current, out = 10, []
    for t, load in sorted(loads.items()):
        d = engine.decide(
            now=float(t), current=current, running=current, readings={"rps": MetricReading("rps", load)}
        )
        if d.desired != current:
            engine.record_scale(at=float(t), from_replicas=current, to_replicas=d.desired)
            current = d.desired
        out.append(d)
    return out


SLOPE = 30.0  # rps per second: a forecast 20 s ahead is 600 rps above the last reading


def rise_then_flat(top_at: int = 60, end: int = 200) -> dict[int, float]:
    """1000 rps rising SLOPE/s until ``top_at``, then flat at the top."""
    return {t: 1000.0 + SLOPE * min(t, top_at) for t in range(0, end + 1, 5)}


def test_take_back_lowers_only_settled_records_and_never_below_their_floor() -> None:
    hist = RecommendationHistory(up_window=0, down_window=300)
    hist.add(0, 9)  # seed / out-of-band: floor is its own count, nothing takes it back
    hist.add_and_bounds(10, 14, floor=11, due=30)  # raised by a forecast due at t=30
    hist.add_and_bounds(15, 14, floor=12)  # "keep current" within tolerance; the load asked 12
    hist.add_and_bounds(20, 15, floor=12, due=40)  # a later forecast, not due yet at t=30
    assert hist.take_back(10, 30, 10, now=30) == 12
    # 14 -> max(10, 11) and 14 -> max(10, 12); the pending forecast's 15 stays; the seed 9 stays.
    assert hist.add_and_bounds(31, 1) == (1, 15)
    assert hist.take_back(20, 40, 10, now=40) == 12
    assert hist.add_and_bounds(41, 1) == (1, 12)


def test_a_claim_is_judged_on_the_reading_at_its_due_time() -> None:
    tracker = MetricTracker("rps", per_replica=True, target=TARGET, tolerance=Tolerances(0.1, 0.1))
    claims = ForecastClaims()
    claims.add(0.0, 20.0, 20, {"rps": 2000.0}, {"rps": 1500.0})
    claims.add(5.0, 25.0, 20, {"rps": 2000.0}, {"rps": 1500.0})
    # 1850 at t=20 over 20 replicas = 92.5 per replica, within 10 % of the target 100: target
    # tracking at the claim's 20 keeps 20, so the first claim came true; nothing to take back.
    assert claims.settle(20.0, {"rps": 1850.0}, [tracker]) == []
    # At t=25 the load is 1700 (85 per replica at 20): the 1850 read before its due time does
    # not hold the second claim, which overshot; 1700 asks for 17.
    [(claim, verdict)] = claims.settle(25.0, {"rps": 1700.0}, [tracker])
    assert claim.made == 5.0 and verdict == math.ceil(1700.0 / TARGET) and len(claims) == 0
    claims.add(30.0, 50.0, 20, {"rps": 2000.0}, {"rps": 1500.0})
    assert len(claims.settle(45.0, {"rps": 1900.0}, [tracker])) == 0 and len(claims) == 1  # not due yet
    [(claim, verdict)] = claims.settle(50.0, {"rps": 1550.0}, [tracker])
    assert claim.replicas == 20 and verdict == math.ceil(1550.0 / TARGET)  # at due, not 1900 before


def test_a_metric_with_no_reading_at_the_due_time_is_judged_on_its_last_one() -> None:
    tracker = MetricTracker("rps", per_replica=True, target=TARGET, tolerance=Tolerances(0.1, 0.1))
    claims = ForecastClaims()
    claims.add(0.0, 20.0, 20, {"rps": 2000.0}, {"rps": 1500.0})
    claims.settle(15.0, {"rps": 1900.0}, [tracker])
    # No valid reading at t=20 (a failed query): the newest one, 1900 (95 per replica at 20,
    # within tolerance), keeps the claim's count.
    assert claims.settle(20.0, {}, [tracker]) == [] and len(claims) == 0


def test_a_claim_is_judged_at_its_count_not_within_tolerance_of_its_forecast_value() -> None:
    """A forecast of 1850 at 20 replicas (92.5 per replica, inside the band) asks to keep 20.
    A peak of 1700 is within 10 % of 1850 but 85 per replica at 20: the tolerance band of the
    count does not hold it, so the claim overshot and the peak asks for ceil(1700 / 100)."""
    tracker = MetricTracker("rps", per_replica=True, target=TARGET, tolerance=Tolerances(0.1, 0.1))
    claims = ForecastClaims()
    claims.add(0.0, 20.0, 20, {"rps": 1850.0}, {"rps": 1600.0})
    [(claim, verdict)] = claims.settle(20.0, {"rps": 1700.0}, [tracker])
    assert claim.replicas == 20 and verdict == math.ceil(1700.0 / TARGET)


def test_a_forecast_that_overshot_is_taken_back_before_the_scale_down_window() -> None:
    decisions = run(rise_then_flat(), {"enabled": True})
    need_at_top = math.ceil((1000.0 + SLOPE * 60) / TARGET)
    peak = max(decisions, key=lambda d: d.desired)
    assert "Forecast" in peak.limits and peak.desired > need_at_top  # the rise foretold past the top
    overshot = [d for d in decisions if "overshot" in d.reason]
    assert overshot, "a forecast above what came must be checked and taken back"
    first = overshot[0]
    assert first.at <= peak.at + 20  # checked when due (horizon 15 s startup + 5 s), not 300 s later
    assert f"the load then asks {need_at_top} at " in first.reason
    # Long before 300 s after the top, the service is back below the forecast's count, at one
    # the flat load keeps within the 10 % tolerance, and never went below what the load needs.
    final = decisions[-1].desired
    assert final < peak.desired and 0.9 <= (1000.0 + SLOPE * 60) / (final * TARGET) <= 1.1
    assert all(d.desired >= need_at_top for d in decisions if d.at >= 60)


def test_a_forecast_that_came_true_is_held_like_a_reactive_recommendation() -> None:
    loads = rise_then_flat(top_at=80)  # the rise goes on until the forecast made at 60 is due
    decisions = run(loads, {"enabled": True})
    assert not any("overshot" in d.reason for d in decisions if d.at <= 80)
    top = 1000.0 + SLOPE * 80
    assert min(d.desired for d in decisions if d.at >= 80) >= math.ceil(top / TARGET)


def test_without_predictive_nothing_is_claimed_or_taken_back() -> None:
    decisions = run(rise_then_flat(), None)
    assert not any("overshot" in d.reason or "forecast" in d.reason for d in decisions)
    # Reactive: the 300 s window holds the highest count the rise asked for to the end, one
    # the flat top keeps within the 10 % tolerance.
    final = decisions[-1].desired
    assert final == max(d.desired for d in decisions)
    assert 0.9 <= (1000.0 + SLOPE * 60) / (final * TARGET) <= 1.1
