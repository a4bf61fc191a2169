"""/metrics: each metric's observed value, and its forecast beside it with spec.predictive."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry

from autoscaler.core.decision import Decision, Forecast, MetricRecommendation
from autoscaler.observability.metrics import ControllerMetrics


def decision(forecast: float | None) -> Decision:
    return Decision(
        at=0.0,
        current=2,
        running=2,
        desired=3,
        recommendation=3,
        reason="r",
        metrics=(MetricRecommendation("rps", 120.0, 3, "r"),),
        forecasts=(Forecast("rps", forecast, 20.0, "trend over 60 s", None if forecast else "too noisy"),),
    )


def test_value_and_forecast_are_exported_and_forgotten() -> None:
    registry = CollectorRegistry()
    metrics = ControllerMetrics(registry)
    metrics.observe_decision("web", decision(150.0), min_replicas=1, max_replicas=10)
    labels = {"service": "web", "metric": "rps"}
    assert registry.get_sample_value("autoscaler_metric_value", labels) == 120.0
    assert registry.get_sample_value("autoscaler_metric_forecast", labels) == 150.0
    metrics.observe_decision("web", decision(None), min_replicas=1, max_replicas=10)
    unused = registry.get_sample_value("autoscaler_metric_forecast", labels)
    assert unused is not None and math.isnan(unused)
    metrics.forget_service("web")
    assert registry.get_sample_value("autoscaler_metric_value", labels) is None
    assert registry.get_sample_value("autoscaler_metric_forecast", labels) is None


def test_no_forecast_series_without_predictive() -> None:
    registry = CollectorRegistry()
    metrics = ControllerMetrics(registry)
    plain = Decision(0.0, 2, 2, 2, 2, "r", metrics=(MetricRecommendation("rps", 90.0, 2, "r"),))
    metrics.observe_decision("web", plain, min_replicas=1, max_replicas=10)
    assert registry.get_sample_value("autoscaler_metric_value", {"service": "web", "metric": "rps"}) == 90.0
    assert (
        registry.get_sample_value("autoscaler_metric_forecast", {"service": "web", "metric": "rps"}) is None
    )
