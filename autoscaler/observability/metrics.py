"""The controller's own Prometheus metrics, on a registry the caller injects.

Never the global registry: tests create one registry each and read it back, and two
controllers in one process (tests, benchmarks) do not collide. Label values are bounded:
service names, directions, HPA limit names and fixed outcome words, never free text.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from autoscaler.core.decision import Decision

NAMESPACE = "autoscaler"

# Reconcile passes take milliseconds with fakes and up to seconds against a slow daemon.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def reason_kind(decision: Decision) -> str:
    """A bounded label for why the number is what it is: the first clamp, else the metrics."""
    if decision.limits:
        return decision.limits[0]
    return "TargetTracking"


class ControllerMetrics:
    """Every series the controller exports, created on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._per_service: dict[str, _ServiceSeries] = {}
        self._decision_counters: dict[tuple[str, str, str], Counter] = {}
        # (service, metric) -> its gauge; labels() is slow at 1,000 services. A forecast
        # series exists only for policies with spec.predictive on.
        self._value_series: dict[tuple[str, str], Gauge] = {}
        self._forecast_series: dict[tuple[str, str], Gauge] = {}

        def per_service(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, ["service"], namespace=NAMESPACE, registry=registry)

        def counter(name: str, doc: str, labels: list[str]) -> Counter:
            return Counter(name, doc, labels, namespace=NAMESPACE, registry=registry)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, namespace=NAMESPACE, registry=registry)

        self.desired = per_service("desired_replicas", "Replicas the last decision asked for.")
        self.current = per_service("current_replicas", "Replicas the service spec set when last observed.")
        self.running = per_service("running_replicas", "Tasks running when last observed.")
        self.min_replicas = per_service(
            "min_replicas", "The governing policy's minReplicas, as raised by any open schedule window."
        )
        self.max_replicas = per_service(
            "max_replicas", "The governing policy's maxReplicas, as set by any open schedule window."
        )
        self.panic = per_service("panic", "1 while the service is in panic mode.")
        self.fallback = per_service(
            "fallback_active",
            "1 while a metric has failed more than fallback.failureThreshold times in a row "
            "and the policy's fallback decides the count.",
        )
        self.metric_value = Gauge(
            "metric_value",
            "The metric reading the last decision used (NaN when it had none).",
            ["service", "metric"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.metric_forecast = Gauge(
            "metric_forecast",
            "spec.predictive: the metric's forecast over the horizon at the last decision "
            "(NaN when not used: too little or too noisy history).",
            ["service", "metric"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.decisions = counter(
            "decisions",
            "Decisions by direction and reason kind (first HPA limit applied, else TargetTracking).",
            ["service", "direction", "reason"],
        )
        self.outcomes = counter(
            "service_outcomes",
            "Per-service pass outcomes: scaled, dry_run, unchanged, held, skipped, failed.",
            ["service", "outcome"],
        )
        self.reconcile_duration = Histogram(
            "reconcile_duration_seconds",
            "Wall time of one reconcile pass over all services.",
            namespace=NAMESPACE,
            registry=registry,
            buckets=_DURATION_BUCKETS,
        )
        self.source_errors = counter("source_errors", "Failed metric fetches by source.", ["source"])
        self.target_errors = counter(
            "target_errors", "Failed Swarm calls by operation (list, get, scale, events).", ["operation"]
        )
        self.policy_load_errors = gauge(
            "policy_load_errors", "Problems found by the last policy reload (0 when every file is good)."
        )
        self.policies = gauge("policies", "Policies in force from files.")
        self.label_policies = gauge("label_policies", "Policies in force from service labels.")
        self.label_problems = per_service(
            "label_policy_problems",
            "Problems in a service's autoscaler.* labels (its last valid policy stays in force).",
        )
        self.paused = per_service("paused", "1 while the service is paused (autoscaler.paused labels).")
        self.paused_since = per_service(
            "paused_since_timestamp_seconds",
            "When the service was paused (autoscaler.pausedAt, else when first seen paused), Unix time.",
        )
        self.last_tick = gauge(
            "last_reconcile_timestamp_seconds", "When the last reconcile pass finished (Unix time)."
        )

    def _series(self, service: str) -> _ServiceSeries:
        # labels() hashes and locks on every call; with 1000 services it was most of a pass.
        series = self._per_service.get(service)
        if series is None:
            series = _ServiceSeries(
                desired=self.desired.labels(service),
                current=self.current.labels(service),
                running=self.running.labels(service),
                min_replicas=self.min_replicas.labels(service),
                max_replicas=self.max_replicas.labels(service),
                panic=self.panic.labels(service),
                fallback=self.fallback.labels(service),
            )
            self._per_service[service] = series
        return series

    def observe_decision(
        self, service: str, decision: Decision, *, min_replicas: int, max_replicas: int
    ) -> None:
        series = self._series(service)
        series.desired.set(decision.desired)
        series.current.set(decision.current)
        series.running.set(decision.running)
        series.min_replicas.set(min_replicas)
        series.max_replicas.set(max_replicas)
        series.panic.set(1 if decision.panic else 0)
        series.fallback.set(1 if "Fallback" in decision.limits else 0)
        for rec in decision.metrics:
            value = math.nan if rec.value is None else rec.value
            self._child(self.metric_value, self._value_series, service, rec.name).set(value)
        for forecast in decision.forecasts:
            value = math.nan if forecast.value is None else forecast.value
            self._child(self.metric_forecast, self._forecast_series, service, forecast.metric).set(value)
        key = (service, decision.direction.value, reason_kind(decision))
        counter = self._decision_counters.get(key)
        if counter is None:
            counter = self._decision_counters[key] = self.decisions.labels(*key)
        counter.inc()

    @staticmethod
    def _child(gauge: Gauge, cache: dict[tuple[str, str], Gauge], service: str, metric: str) -> Gauge:
        child = cache.get((service, metric))
        if child is None:
            child = cache[(service, metric)] = gauge.labels(service, metric)
        return child

    def observe_state(self, service: str, *, current: int, running: int) -> None:
        """For services observed but not decided on (held, failed before deciding)."""
        series = self._series(service)
        series.current.set(current)
        series.running.set(running)

    def observe_pause(self, service: str, *, paused: bool, since: float | None) -> None:
        self.paused.labels(service).set(1 if paused else 0)
        if paused and since is not None:
            self.paused_since.labels(service).set(since)
        else:
            with contextlib.suppress(KeyError):
                self.paused_since.remove(service)

    def forget_label_problems(self, service: str) -> None:
        with contextlib.suppress(KeyError):
            self.label_problems.remove(service)

    def forget_service(self, service: str) -> None:
        """Drop a removed service's gauges so dashboards do not show a ghost."""
        self._per_service.pop(service, None)
        gauges = (
            self.desired,
            self.current,
            self.running,
            self.min_replicas,
            self.max_replicas,
            self.panic,
            self.fallback,
            self.paused,
            self.paused_since,
        )
        for gauge in gauges:
            with contextlib.suppress(KeyError):  # never observed for this service
                gauge.remove(service)
        for gauge, cache in (
            (self.metric_value, self._value_series),
            (self.metric_forecast, self._forecast_series),
        ):
            for key in [k for k in cache if k[0] == service]:
                del cache[key]
                gauge.remove(*key)


@dataclass(frozen=True, slots=True)
class _ServiceSeries:
    desired: Gauge
    current: Gauge
    running: Gauge
    min_replicas: Gauge
    max_replicas: Gauge
    panic: Gauge
    fallback: Gauge
