"""The controller's own Prometheus metrics, on a registry the caller injects.

Never the global registry: tests create one registry each and read it back, and two
controllers in one process (tests, benchmarks) do not collide. Label values are bounded:
service names, directions, HPA limit names and fixed outcome words, never free text.

The gauges of each service's last pass (desired, current, running, min, max, panic, the
metric values and forecasts) are not kept as gauge objects set on every pass: they are
read at scrape time from what the reconciler already records for each service
(``ServiceSample``). Six gauge children per service were, at 10,000 services, 60,000
objects with a lock each (~45 MB) and 60,000 ``set`` calls per pass, for values that
already exist in the records. The two per-service counters (decisions, outcomes) are
plain counts exported at scrape time for the same reason (``ServiceCounter``).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from autoscaler.core.decision import Decision

NAMESPACE = "autoscaler"

# Reconcile passes take milliseconds with fakes and up to seconds against a slow daemon.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def reason_kind(decision: Decision) -> str:
    """A bounded label for why the number is what it is: the first clamp, else the metrics."""
    if decision.limits:
        return decision.limits[0]
    return "TargetTracking"


@dataclass(frozen=True, slots=True)
class ServiceSample:
    """One governed service's gauges as of its last pass.

    ``desired`` and ``panic`` are None when that pass made no decision (the service was
    held for a rolling update, or failed before deciding): those two series are then absent
    for the service rather than showing an older decision as if it were current.
    """

    service: str
    current: int
    running: int
    min_replicas: int
    max_replicas: int
    desired: int | None = None
    panic: bool | None = None
    fallback: bool | None = None  # spec.fallback decided the count
    values: tuple[tuple[str, float | None], ...] = ()  # (metric, reading the decision used)
    forecasts: tuple[tuple[str, float | None], ...] = ()  # (metric, forecast), spec.predictive


_SERVICE_GAUGES = {
    "desired_replicas": "Replicas the last decision asked for.",
    "current_replicas": "Replicas the service spec set when last observed.",
    "running_replicas": "Tasks running when last observed.",
    "min_replicas": "The governing policy's minReplicas, as raised by any open schedule window.",
    "max_replicas": "The governing policy's maxReplicas, as set by any open schedule window.",
    "panic": "1 while the service is in panic mode.",
    "fallback_active": "1 while a metric has failed more than fallback.failureThreshold times in a row "
    "and the policy's fallback decides the count.",
}
_METRIC_GAUGES = {
    "metric_value": "The metric reading the last decision used (NaN when it had none).",
    "metric_forecast": "spec.predictive: the metric's forecast over the horizon at the last decision "
    "(NaN when not used: too little or too noisy history).",
}


class _ServiceGauges(Collector):
    """The per-service gauge families, built from the samples at each scrape."""

    def __init__(self, samples: Callable[[], Iterable[ServiceSample]]) -> None:
        self._samples = samples

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The family names alone, so the registry can refuse a clash when this is registered."""
        return iter(self._families().values())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = self._families()
        for sample in self._samples():
            labels = [sample.service]
            families["current_replicas"].add_metric(labels, sample.current)
            families["running_replicas"].add_metric(labels, sample.running)
            families["min_replicas"].add_metric(labels, sample.min_replicas)
            families["max_replicas"].add_metric(labels, sample.max_replicas)
            if sample.desired is not None:
                families["desired_replicas"].add_metric(labels, sample.desired)
            if sample.panic is not None:
                families["panic"].add_metric(labels, int(sample.panic))
            if sample.fallback is not None:
                families["fallback_active"].add_metric(labels, int(sample.fallback))
            for metric, value in sample.values:
                families["metric_value"].add_metric([sample.service, metric], _or_nan(value))
            for metric, value in sample.forecasts:
                families["metric_forecast"].add_metric([sample.service, metric], _or_nan(value))
        return iter(families.values())

    @staticmethod
    def _families() -> dict[str, GaugeMetricFamily]:
        families = {
            name: GaugeMetricFamily(f"{NAMESPACE}_{name}", doc, labels=["service"])
            for name, doc in _SERVICE_GAUGES.items()
        }
        for name, doc in _METRIC_GAUGES.items():
            families[name] = GaugeMetricFamily(f"{NAMESPACE}_{name}", doc, labels=["service", "metric"])
        return families


class ServiceCounter(Collector):
    """A counter with a service label, kept as one count per label set and exported at scrape time.

    The same series as a prometheus_client ``Counter`` (``_total`` and ``_created``), without a
    child object per label set: a child is a value with its own lock, ~600 bytes, and two
    such counters with children for each of 10,000 services were ~12 MiB (issue 15). All
    increments happen on the event loop's thread; a scrape reads a copy.
    """

    def __init__(self, name: str, doc: str, labels: list[str], registry: CollectorRegistry) -> None:
        self._name, self._doc, self._labels = f"{NAMESPACE}_{name}", doc, labels
        self._counts: dict[tuple[str, ...], float] = {}
        self._created: dict[tuple[str, ...], float] = {}
        registry.register(self)

    def inc(self, *labels: str) -> None:
        count = self._counts.get(labels)
        if count is None:
            self._created[labels] = time.time()
            count = 0.0
        self._counts[labels] = count + 1.0

    def describe(self) -> Iterator[CounterMetricFamily]:
        return iter([CounterMetricFamily(self._name, self._doc, labels=self._labels)])

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self._name, self._doc, labels=self._labels)
        for labels, count in list(self._counts.items()):
            family.add_metric(list(labels), count, created=self._created[labels])
        return iter([family])


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


class ControllerMetrics:
    """Every series the controller exports, created on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

        def per_service(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, ["service"], namespace=NAMESPACE, registry=registry)

        def counter(name: str, doc: str, labels: list[str]) -> Counter:
            return Counter(name, doc, labels, namespace=NAMESPACE, registry=registry)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, namespace=NAMESPACE, registry=registry)

        self.decisions = ServiceCounter(
            "decisions",
            "Decisions by direction and reason kind (first HPA limit applied, else TargetTracking).",
            ["service", "direction", "reason"],
            registry,
        )
        self.outcomes = ServiceCounter(
            "service_outcomes",
            "Per-service pass outcomes: scaled, dry_run, unchanged, held, skipped, failed.",
            ["service", "outcome"],
            registry,
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

    def watch_services(self, samples: Callable[[], Iterable[ServiceSample]]) -> None:
        """Export the per-service gauges from ``samples``, called at every scrape (once per registry)."""
        self.registry.register(_ServiceGauges(samples))

    def count_decision(self, service: str, decision: Decision) -> None:
        self.decisions.inc(service, decision.direction.value, reason_kind(decision))

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
        """Drop a removed service's pause gauges so dashboards do not show a ghost.

        (The gauges of its last pass go with its record.)"""
        for gauge in (self.paused, self.paused_since):
            with contextlib.suppress(KeyError):  # never observed for this service
                gauge.remove(service)
