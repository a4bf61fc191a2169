"""Issue 13 and issue 14 together: spec.predictive beside spec.schedules and spec.fallback.

The rules each feature documents must survive the other: a forecast only ever raises the
count but stays within the bounds in force (an open window's maxReplicas, else
spec.maxReplicas) and never lowers a schedule's floor; a fallback never scales down on
missing data unless its behavior is static, forecast or not.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st
from test_engine import make_spec, metric

from autoscaler.core.decision import Decision, MetricReading
from autoscaler.core.engine import Engine
from autoscaler.core.policy import PolicySpec

T0 = datetime.fromisoformat("2026-12-01T07:00:00+00:00").timestamp()  # wall time of now=0
DOWN = "prometheus: connection refused"
PREDICTIVE = {"enabled": True, "windowSeconds": 30, "minHistorySeconds": 10, "horizonSeconds": 30}


def spec_of(
    *, schedule: dict[str, Any], fallback: dict[str, Any], spec_max: int = 20, spec_min: int = 2
) -> PolicySpec:
    return make_spec(
        [metric("rps", averageValue=10), metric("queue", averageValue=50)],
        minReplicas=spec_min,
        maxReplicas=spec_max,
        schedules=[{"name": "peak", **schedule}],
        fallback=fallback,
        predictive=PREDICTIVE,
        tolerance=0.0,  # so that a forecast's one replica more shows
    )


def readings(rps: float | None, queue: float | None) -> dict[str, MetricReading]:
    return {
        n: MetricReading(n, v) if v is not None else MetricReading.missing(n, DOWN)
        for n, v in (("rps", rps), ("queue", queue))
    }


def run(engine: Engine, current: int, loads: list[tuple[float | None, float | None]]) -> list[Decision]:
    """Decisions 5 s apart from ``current`` replicas, the service following each one at once."""
    step, out = 5.0, []
    for i, (rps, queue) in enumerate(loads):
        now = step * i
        d = engine.decide(
            now=now, current=current, running=current, readings=readings(rps, queue), wall_time=T0 + now
        )
        out.append(d)
        if d.desired != current:
            engine.record_scale(at=now, from_replicas=current, to_replicas=d.desired)
            current = d.desired
    return out


# A two-minute window from 07:00 UTC: floor 4, ceiling 8 (below spec.maxReplicas 20).
WINDOW = {"start": "0 7 * * *", "end": "2 7 * * *", "minReplicas": 4, "maxReplicas": 8}
IF_HIGHER = {"failureThreshold": 2, "replicas": 6, "behavior": "currentReplicasIfHigher"}


def test_a_ramp_is_forecast_but_capped_by_the_window_then_by_spec_max_replicas() -> None:
    # rps rises 0.5/s from 20 (t=355 s: 197.5): reactive asks rps/10 replicas, the
    # forecast 30 s ahead 15 rps more, so 1-2 replicas more.
    engine = Engine(spec_of(schedule=WINDOW, fallback=IF_HIGHER), now=0.0, current=4)
    decisions = run(engine, 4, [(20.0 + 0.5 * 5 * i, 10.0) for i in range(72)])
    open_, closed = decisions[:24], decisions[24:]  # 07:00:00-07:01:55, then 07:02:00 on
    assert all(d.desired <= 8 for d in open_)
    capped = [d for d in open_ if "Forecast" in d.limits and "TooManyReplicas" in d.limits]
    assert capped and all(d.recommendation > 8 and d.desired == 8 for d in capped)
    # Ahead of the load: decisions above both what rps asks for now and the window's floor.
    ahead = [d for d in open_ if "Forecast" in d.limits and d.desired > max(4, d.metrics[0].desired or 0)]
    assert ahead
    assert all(d.desired <= 20 for d in closed)
    assert any(8 < d.desired < 20 and "Forecast" in d.limits for d in closed)
    assert closed[-1].desired == 20 and "TooManyReplicas" in closed[-1].limits


def test_a_forecast_on_a_healthy_metric_raises_a_fallback_but_not_past_the_window() -> None:
    # queue fails from the start: after failureThreshold 2 the fallback asks max(current, 6);
    # rps keeps rising and its forecast asks for more, up to the window's ceiling of 8.
    engine = Engine(spec_of(schedule=WINDOW, fallback=IF_HIGHER), now=0.0, current=4)
    decisions = run(engine, 4, [(20.0 + 0.5 * 5 * i, None) for i in range(20)])
    assert "Fallback" not in decisions[1].limits and "Fallback" in decisions[2].limits
    assert decisions[2].desired == 6  # the fallback's count beats rps's 4 (reactive and forecast)
    raised = [d for d in decisions if "Fallback" in d.limits and "Forecast" in d.limits]
    assert raised and all(d.desired <= 8 for d in decisions)
    assert decisions[-1].desired == 8


def test_a_static_fallback_below_the_floor_is_held_at_the_floor_and_no_forecast_lifts_it() -> None:
    # Both metrics fail: no forecast at all; static fallback asks 1, the window's floor is 4.
    static = {"failureThreshold": 1, "replicas": 1, "behavior": "static"}
    engine = Engine(spec_of(schedule=WINDOW, fallback=static), now=0.0, current=4)
    decisions = run(engine, 4, [(None, None)] * 6)
    assert [d.desired for d in decisions] == [4] * 6
    assert all(not d.forecasts for d in decisions)
    assert "TooFewReplicas: held at minReplicas 4" in decisions[-1].reason


def test_activation_alone_decides_0_to_1_whatever_the_forecast() -> None:
    # rps climbs towards activationValue 50 from below: the forecast sees it pass 50 within
    # its horizon, but a service at 0 wakes only when the reading itself passes it.
    spec = make_spec(
        [{**metric("rps", averageValue=10), "activationValue": 50}],
        minReplicas=0,
        maxReplicas=20,
        predictive=PREDICTIVE,
        tolerance=0.0,
    )
    engine = Engine(spec, now=0.0, current=0)
    # 0, 10, ... 60 rps (the queue reading run() adds is not one of this policy's metrics)
    decisions = run(engine, 0, [(2.0 * 5 * i, None) for i in range(7)])
    asleep, woken = decisions[:6], decisions[6]
    assert all(d.desired == 0 for d in asleep)
    assert any(f.value is not None and f.value > 50 for d in asleep for f in d.forecasts)
    assert all("forecast not used: activation decides 0 <-> 1" in d.reason for d in asleep if d.forecasts)
    assert woken.desired == 1 and "Activation" in woken.limits and "Forecast" not in woken.limits


# --- invariants over random policies and tick sequences ---------------------------------

# rps: a ramp plus this tick's noise (None: the read failed); queue: any value, or failed.
tick = st.fixed_dictionaries(
    {
        "dt": st.sampled_from([1.0, 5.0, 5.0, 15.0]),
        "rps_noise": st.one_of(st.none(), st.floats(0, 5)),
        "queue": st.one_of(st.none(), st.floats(0, 400, allow_nan=False)),
        "hold": st.booleans(),
    }
)


BEHAVIORS = ["static", "currentReplicas", "currentReplicasIfHigher", "currentReplicasIfLower"]


@st.composite
def combined_specs(draw: st.DrawFn) -> PolicySpec:
    spec_min = draw(st.integers(1, 5))
    spec_max = draw(st.integers(spec_min, 30))
    floor = draw(st.integers(0, 30))
    ceiling = draw(st.integers(max(floor, 1), 40))
    # Open on even minutes, closed on odd ones: windows open and close inside a run.
    schedule = {"start": "*/2 * * * *", "end": "1-59/2 * * * *", "minReplicas": floor, "maxReplicas": ceiling}
    fallback = {
        "failureThreshold": draw(st.integers(1, 3)),
        "replicas": draw(st.integers(0, spec_max)),
        "behavior": draw(st.sampled_from(BEHAVIORS)),
    }
    return spec_of(schedule=schedule, fallback=fallback, spec_max=spec_max, spec_min=spec_min)


@settings(max_examples=150, deadline=None)
@given(
    spec=combined_specs(),
    start=st.integers(1, 40),
    level=st.floats(0, 300),
    ramp=st.floats(-2, 10),
    ticks=st.lists(tick, min_size=5, max_size=40),
)
def test_forecasts_keep_to_the_bounds_in_force_and_fallback_never_scales_down_unless_static(
    spec: PolicySpec, start: int, level: float, ramp: float, ticks: list[dict[str, Any]]
) -> None:
    # A twin without spec.predictive sees the same ticks and the same replica count (the
    # count follows the forecasting engine's decisions, fed to both as their own), so any
    # difference between the two is the forecast's.
    off = spec.predictive.model_copy(update={"enabled": False})
    reactive_spec = spec.model_copy(update={"predictive": off})
    predictive, reactive = Engine(spec, now=0.0, current=start), Engine(reactive_spec, now=0.0, current=start)
    static = spec.fallback is not None and spec.fallback.behavior.value == "static"
    now, current = 0.0, start
    for t in ticks:
        now += t["dt"]
        rps = None if t["rps_noise"] is None else max(0.0, level + ramp * now + t["rps_noise"])
        values = readings(rps, t["queue"])
        hold = "failover in progress" if t["hold"] else None
        args: dict[str, Any] = {
            "now": now, "current": current, "running": current, "readings": values,
            "hold_scale_down": hold, "wall_time": T0 + now,
        }  # fmt: skip
        p, r = predictive.decide(**args), reactive.decide(**args)
        floor, ceiling = predictive.bounds.min_replicas, predictive.bounds.max_replicas
        assert (floor, ceiling) == (reactive.bounds.min_replicas, reactive.bounds.max_replicas)

        # The forecast only ever raises, and never past the ceiling in force (the open
        # window's maxReplicas, else spec.maxReplicas); it never enters panic either.
        assert p.desired >= r.desired, (r.reason, p.reason)
        if p.desired > r.desired:
            assert p.desired <= ceiling, p.reason
            event("a forecast raised the decision")
        if "Forecast" in p.limits:
            assert p.recommendation > r.recommendation
            event("a forecast raised the recommendation")
        assert p.panic == r.panic
        # Bounds: the floor holds (schedule or spec), the ceiling too except where a hold keeps
        # an over-ceiling service where it is.
        assert p.desired >= floor
        assert p.desired <= ceiling or (hold is not None and p.desired == current), p.reason
        # Missing data never scales down inside the bounds unless the fallback is static.
        missing = not all(v.valid for v in values.values())
        if missing and not static and floor <= current <= ceiling:
            assert p.desired >= current, p.reason
            assert r.desired >= current, r.reason
        if missing and "Fallback" in p.limits:
            event("fallback decided")

        if p.desired != current:
            for engine in (predictive, reactive):
                engine.record_scale(at=now, from_replicas=current, to_replicas=p.desired)
            current = p.desired
