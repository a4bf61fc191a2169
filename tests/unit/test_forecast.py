"""The forecaster (core/forecast.py) and the engine's use of it (spec.predictive).

Expected values come from the line or ramp each test builds (slope x horizon), never
from the forecaster's own output.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from autoscaler.core.decision import Decision, MetricReading
from autoscaler.core.engine import Engine
from autoscaler.core.forecast import DAY, MAX_SAMPLES, Forecaster, MetricHistory, fit_line
from autoscaler.core.policy import PolicySpec
from autoscaler.core.predictive_policy import Predictive

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


def spec(predictive: dict[str, Any] | None = None, **fields: Any) -> PolicySpec:
    doc: dict[str, Any] = {
        "service": "web",
        "minReplicas": 1,
        "maxReplicas": 100,
        "metrics": [{"name": "rps", "prometheus": {"query": "q"}, "target": {"averageValue": 100}}],
        "panic": {"enabled": False},
        "behavior": UNLIMITED,
        "predictive": {"enabled": True, **(predictive or {})},
    }
    doc.update(fields)
    return PolicySpec.model_validate(doc)


def test_fit_line_recovers_a_line_exactly() -> None:
    times = [0.0, 5.0, 10.0, 15.0]
    level, slope, scatter, mean = fit_line([(t, 100 + 3 * t) for t in times])
    assert level == pytest.approx(100 + 3 * 15) and slope == pytest.approx(3)
    assert scatter == pytest.approx(0, abs=1e-6) and mean == pytest.approx(100 + 3 * 7.5)


@pytest.mark.parametrize("method", ["trend", "holt"])
def test_a_steady_ramp_is_forecast_along_its_slope(method: str) -> None:
    history = MetricHistory("rps", Predictive(enabled=True, method=method))
    for t in range(0, 301, 5):  # 2 req/s per second, for five minutes
        history.add(float(t), 200.0 + 2.0 * t)
    f = history.forecast(300.0, 20.0)
    expected = 200.0 + 2.0 * 320
    assert f.value == pytest.approx(expected, rel=0.02 if method == "holt" else 1e-9)
    assert f.method == ("trend over 60 s" if method == "trend" else "Holt over 60 s")


def test_too_little_history_is_not_used_and_says_why() -> None:
    history = MetricHistory("rps", Predictive(enabled=True))
    for t in (0.0, 5.0, 10.0):
        history.add(t, 100.0 + t)
    f = history.forecast(10.0, 20.0)
    assert f.value is None and f.note == "too little history (3 readings over 10 s, needs 30 s)"


def test_too_noisy_history_is_not_used_and_says_why() -> None:
    history = MetricHistory("rps", Predictive(enabled=True, max_noise=0.25))
    for k, t in enumerate(range(0, 61, 5)):
        history.add(float(t), 100.0 if k % 2 else 300.0)  # mean 200, scatter ~100: 50 %
    f = history.forecast(60.0, 20.0)
    assert f.value is None and f.note is not None and f.note.startswith("too noisy (scatter")
    assert "limit 25%" in f.note


def test_history_is_bounded_by_the_window_and_a_count() -> None:
    history = MetricHistory("rps", Predictive(enabled=True, window_seconds=60))
    for t in range(0, 1000):
        history.add(float(t), 1.0)
    assert len(history._samples) == 61  # t = 939 .. 999
    wide = MetricHistory("rps", Predictive(enabled=True, window_seconds=3600))
    for t in range(0, 5000):
        wide.add(float(t), 1.0)
    assert len(wide._samples) == MAX_SAMPLES


def test_daily_pattern_foresees_yesterdays_jump() -> None:
    # Flat 100, except a jump to 500 at 09:00 each day: no trend can see it coming, the
    # profile can (the minute after 09:00 was at 500 a day ago).
    history = MetricHistory("rps", Predictive(enabled=True, seasonal=True))
    nine = 9 * 3600.0
    t = 0.0
    while t < DAY + nine - 30:
        in_jump = (t % DAY) >= nine and (t % DAY) < nine + 600
        history.add(t, 500.0 if in_jump else 100.0)
        t += 30.0
    now = t - 30.0  # last reading, 09:00 minus 60 s on day two
    f = history.forecast(now, 120.0)
    assert f.value is not None and f.value > 300.0 and f.method.endswith("+ daily pattern")
    trend_only = MetricHistory("rps", Predictive(enabled=True, seasonal=False))
    for k in range(10):
        trend_only.add(now - 30.0 * (9 - k), 100.0)
    assert trend_only.forecast(now, 120.0).value == pytest.approx(100.0)


def test_horizon_defaults_to_startup_plus_the_interval_seen() -> None:
    forecaster = Forecaster(Predictive(enabled=True, startup_seconds=15), ("rps",))
    forecaster.step(0.0, {"rps": 1.0})
    forecaster.step(5.0, {"rps": 1.0})
    assert forecaster.horizon() == 20.0
    assert Forecaster(Predictive(enabled=True, horizon_seconds=42), ("rps",)).horizon() == 42.0


def test_min_history_cannot_exceed_the_window() -> None:
    with pytest.raises(ValidationError, match="minHistorySeconds"):
        Predictive(enabled=True, window_seconds=30, min_history_seconds=60)


def ramp_engine(predictive: dict[str, Any] | None = None, **fields: Any) -> tuple[Engine, list[Any]]:
    """An engine fed a 5 req/s-per-second ramp every 5 s up to t=60, at 10 replicas."""
    engine = Engine(spec(predictive, **fields), now=0.0, current=10)
    decisions = []
    for t in range(0, 61, 5):
        value = 1000.0 + 5.0 * t
        decisions.append(
            engine.decide(now=float(t), current=10, running=10, readings={"rps": MetricReading("rps", value)})
        )
    return engine, decisions


def test_a_rising_trend_raises_the_recommendation_and_says_so() -> None:
    _, decisions = ramp_engine()
    last = decisions[-1]
    # At t=60 the load is 1300; the horizon is 15 s startup + 5 s interval; 5/s x 20 s = +100.
    expected = math.ceil((1300.0 + 5.0 * 20) / 100)
    assert last.recommendation == expected and last.desired == expected
    assert f"forecast rps 1400 in 20 s (trend over 60 s) -> {expected}" in last.reason
    assert "Forecast" in last.limits
    assert last.forecasts[0].value == pytest.approx(1400.0)
    # Early ticks: too little history, said in the reason, reactive answer kept.
    assert "forecast not used: rps too little history" in decisions[1].reason
    # 1025 over 10 running is within the 10 % tolerance of 100 per replica: keep 10.
    assert decisions[1].recommendation == 10 and "Forecast" not in decisions[1].limits


def slow_rise(start: float, predictive: dict[str, Any] | None = None) -> list[Decision]:
    """10 replicas serving ``start`` + 1 rps per second for a minute (target 100 per replica)."""
    engine = Engine(spec(predictive), now=0.0, current=10)
    return [
        engine.decide(now=float(t), current=10, running=10, readings={"rps": MetricReading("rps", start + t)})
        for t in range(0, 61, 5)
    ]


def test_a_rise_foretold_from_over_target_is_not_left_to_the_tolerance() -> None:
    last = slow_rise(1000.0)[-1]
    # 1060 over 10 running is 106 per replica: over target, inside the 10 % tolerance, so the
    # reading alone keeps 10. Its forecast, 1060 + 1/s x 20 s = 1080, is inside the band too,
    # but the load is over target now and rising: the forecast asks ceil(1080 / 100).
    assert last.metrics[0].desired == 10 and "within tolerance" in last.metrics[0].reason
    assert last.recommendation == math.ceil(1080.0 / 100) and "Forecast" in last.limits
    expected = "forecast rps 1080 in 20 s (trend over 60 s) -> 11; 1060 is over target at 10 running"
    assert expected in last.reason


def test_a_rise_foretold_from_just_over_target_stays_within_the_tolerance() -> None:
    # 1010 over 10 running is 1 % over target, within the first fifth of the 10 % band
    # (OVER_TARGET_SHARE): the band still keeps 10, though the forecast (1030) is higher.
    last = slow_rise(950.0)[-1]
    assert last.recommendation == 10 and "Forecast" not in last.limits
    # 1025 is 2.5 % over, past that fifth: the forecast 1045 asks ceil(1045 / 100).
    last = slow_rise(965.0)[-1]
    assert last.recommendation == math.ceil(1045.0 / 100) and "Forecast" in last.limits


def test_a_rise_foretold_from_under_target_stays_within_the_tolerance() -> None:
    # 960 rising to a forecast 980: under target now, the band keeps 10, forecast or not.
    last = slow_rise(900.0)[-1]
    assert last.recommendation == 10 and "Forecast" not in last.limits


def test_forecast_only_computes_and_explains_without_acting() -> None:
    _, decisions = ramp_engine({"mode": "forecastOnly"})
    last = decisions[-1]
    assert last.recommendation == 13  # ceil(1300 / 100): reactive only
    assert "forecastOnly: rps 1400 in 20 s (trend over 60 s) -> 14, not acted on" in last.reason
    assert last.forecasts[0].value == pytest.approx(1400.0) and "Forecast" not in last.limits


def test_a_falling_trend_never_lowers_the_recommendation() -> None:
    engine = Engine(spec(), now=0.0, current=20)
    for t in range(0, 61, 5):
        d = engine.decide(
            now=float(t), current=20, running=20, readings={"rps": MetricReading("rps", 2000.0 - 10.0 * t)}
        )
    # Reactive: ceil(1400 / 100) = 14; the forecast (1200) would say 12 and is ignored.
    assert d.recommendation == 14 and d.forecasts[0].value == pytest.approx(1200.0)
    assert "Forecast" not in d.limits


def test_max_replicas_still_caps_a_forecast() -> None:
    _, decisions = ramp_engine(maxReplicas=13)
    assert decisions[-1].recommendation == 14 and decisions[-1].desired == 13
    assert "TooManyReplicas" in decisions[-1].limits


def test_disabled_predictive_keeps_no_history_and_no_forecasts() -> None:
    engine = Engine(spec({"enabled": False}), now=0.0, current=10)
    d = engine.decide(now=0.0, current=10, running=10, readings={"rps": MetricReading("rps", 1000.0)})
    assert d.forecasts == () and "forecast" not in d.reason


def test_hot_reload_restarts_history_only_when_predictive_changes() -> None:
    engine, _ = ramp_engine()
    kept = engine._forecaster
    engine.update_spec(spec())
    assert engine._forecaster is kept
    engine.update_spec(spec({"mode": "forecastOnly"}))  # mode alone: same history, new mode
    assert engine._forecaster is kept and kept.config.mode == "forecastOnly"
    engine.update_spec(spec({"windowSeconds": 120}))
    assert engine._forecaster is not kept and engine._forecaster is not None
