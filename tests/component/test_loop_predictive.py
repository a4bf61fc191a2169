"""spec.predictive through the real reconcile loop: a rising load is scaled for ahead of time,
and /metrics carries the forecast beside the observed value."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry
from timing import FakeClock

from autoscaler.reconciler.loop import Reconciler

from .fakes import FakeSource, FakeTarget, service, write_policy

MakeReconciler = Callable[..., Reconciler]


def with_predictive(path: Path, mode: str) -> None:
    text = path.read_text()
    path.write_text(
        text.replace("  panic:\n", f"  predictive:\n    enabled: true\n    mode: {mode}\n  panic:\n", 1)
    )


async def ramp(reconciler: Reconciler, source: FakeSource, clock: FakeClock) -> None:
    """10 -> 70 req/s over 60 s, a pass every 5 s (rps rises 1 req/s per second)."""
    for k in range(13):
        source.values[("web", "rps")] = 10.0 + 5.0 * k
        if k == 0:
            await reconciler.run_once()  # loads the policies, then a pass
        else:
            await reconciler.reconcile()
        clock.advance(5)


async def test_a_rising_load_is_scaled_for_ahead_and_exported(
    policy_dir: Path, make_reconciler: MakeReconciler, clock: FakeClock, registry: CollectorRegistry
) -> None:
    with_predictive(write_policy(policy_dir, "web", target=10.0, max_replicas=20), "act")
    target = FakeTarget(service("web", 1))
    source = FakeSource()
    reconciler = make_reconciler(target, source)
    await ramp(reconciler, source, clock)

    decision = reconciler.status.records["web"].decision
    assert decision is not None
    # Last reading 70 req/s, rising 1 req/s per second; horizon 15 s start-up + 5 s interval.
    forecast = 70.0 + 1.0 * 20
    assert decision.forecasts[0].value is not None
    assert math.isclose(decision.forecasts[0].value, forecast, rel_tol=1e-9)
    assert decision.recommendation == math.ceil(forecast / 10.0) > math.ceil(70.0 / 10.0)
    assert "forecast rps 90 in 20 s (trend over 60 s)" in decision.reason
    labels = {"service": "web", "metric": "rps"}
    assert registry.get_sample_value("autoscaler_metric_value", labels) == 70.0
    assert registry.get_sample_value("autoscaler_metric_forecast", labels) == forecast


async def test_forecast_only_exports_without_acting(
    policy_dir: Path, make_reconciler: MakeReconciler, clock: FakeClock, registry: CollectorRegistry
) -> None:
    with_predictive(write_policy(policy_dir, "web", target=10.0, max_replicas=20), "forecastOnly")
    target = FakeTarget(service("web", 1))
    source = FakeSource()
    reconciler = make_reconciler(target, source)
    await ramp(reconciler, source, clock)

    decision = reconciler.status.records["web"].decision
    assert decision is not None and "Forecast" not in decision.limits
    assert decision.recommendation == math.ceil(70.0 / 10.0)
    assert (
        registry.get_sample_value("autoscaler_metric_forecast", {"service": "web", "metric": "rps"}) == 90.0
    )
    assert "forecastOnly: rps 90 in 20 s (trend over 60 s) -> 9, not acted on" in decision.reason
