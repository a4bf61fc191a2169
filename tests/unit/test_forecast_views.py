"""What people see of forecasts: /metrics series, /decisions JSON and `explain`."""

from __future__ import annotations

import io
import json
import math

from prometheus_client import CollectorRegistry

from autoscaler.cli.explain import render
from autoscaler.core.decision import Decision, Forecast, MetricRecommendation
from autoscaler.core.policy import ScalingPolicy
from autoscaler.observability.metrics import ControllerMetrics
from autoscaler.reconciler.records import Outcome, ServiceRecord

POLICY = ScalingPolicy.model_validate(
    {
        "apiVersion": "autoscaler.swarm/v1",
        "kind": "ScalingPolicy",
        "metadata": {"name": "web"},
        "spec": {
            "service": "web",
            "maxReplicas": 10,
            "metrics": [{"name": "rps", "prometheus": {"query": "q"}, "target": {"averageValue": 50}}],
        },
    }
)


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


def record(d: Decision) -> ServiceRecord:
    return ServiceRecord("web", "id-web", POLICY, 0.0, Outcome.SCALED, "r", d.current, d.running, d)


def test_value_and_forecast_are_exported_and_forgotten() -> None:
    registry = CollectorRegistry()
    records: dict[str, ServiceRecord] = {"web": record(decision(150.0))}
    ControllerMetrics(registry).watch_services(lambda: [s for r in records.values() if (s := r.sample())])
    labels = {"service": "web", "metric": "rps"}
    assert registry.get_sample_value("autoscaler_metric_value", labels) == 120.0
    assert registry.get_sample_value("autoscaler_metric_forecast", labels) == 150.0
    records["web"] = record(decision(None))
    unused = registry.get_sample_value("autoscaler_metric_forecast", labels)
    assert unused is not None and math.isnan(unused)
    del records["web"]  # a removed service's record goes, and its series with it
    assert registry.get_sample_value("autoscaler_metric_value", labels) is None
    assert registry.get_sample_value("autoscaler_metric_forecast", labels) is None


def test_no_forecast_series_without_predictive() -> None:
    registry = CollectorRegistry()
    plain = Decision(0.0, 2, 2, 2, 2, "r", metrics=(MetricRecommendation("rps", 90.0, 2, "r"),))
    sample = record(plain).sample()
    assert sample is not None
    ControllerMetrics(registry).watch_services(lambda: [sample])
    assert registry.get_sample_value("autoscaler_metric_value", {"service": "web", "metric": "rps"}) == 90.0
    assert (
        registry.get_sample_value("autoscaler_metric_forecast", {"service": "web", "metric": "rps"}) is None
    )


def test_decisions_json_and_explain_show_each_forecast_or_why_not() -> None:
    policy = ScalingPolicy.model_validate(
        {
            "apiVersion": "autoscaler.swarm/v1",
            "kind": "ScalingPolicy",
            "metadata": {"name": "web"},
            "spec": {
                "service": "web",
                "maxReplicas": 10,
                "predictive": {"enabled": True},
                "metrics": [{"name": "rps", "prometheus": {"query": "q"}, "target": {"averageValue": 50}}],
            },
        }
    )
    d = Decision(
        0.0,
        2,
        2,
        17,
        17,
        "r",
        metrics=(MetricRecommendation("rps", 120.0, 3, "r"),),
        limits=("Forecast",),
        forecasts=(
            Forecast("rps", 820.0, 20.0, "trend over 60 s"),
            Forecast(
                "conns", None, 20.0, "trend over 60 s", "too noisy (scatter 40% of the mean, limit 25%)"
            ),
        ),
    )
    body = ServiceRecord("web", "id0123456789ab", policy, 0.0, Outcome.SCALED, "r", 2, 2, d).to_json()
    assert body["decision"]["forecasts"][0] == {
        "metric": "rps",
        "value": 820.0,
        "horizon": 20.0,
        "method": "trend over 60 s",
        "note": None,
    }
    out = io.StringIO()
    render(json.loads(json.dumps(body)), {}, out)
    text = out.getvalue()
    assert "forecast  rps 820 in 20 s (trend over 60 s)" in text
    assert "forecast  conns: not used, too noisy (scatter 40% of the mean, limit 25%)" in text
