"""The per-node exporter: reads IPVS on every scrape and serves Prometheus metrics.

A custom Collector on a private registry, so /metrics always shows the tables as they are at
scrape time (reads are cached for ``min_interval`` seconds so several scrapers do not multiply
the work). Nothing here raises out of a scrape: a node without IPVS reports
``swarm_ipvs_available 0`` and logs one line saying why; per-namespace failures count in
``swarm_ipvs_read_errors_total`` and are logged once per distinct message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ipvs_agent.collect import IpvsReader, NodeSnapshot, collect_node
from ipvs_agent.mangle import SwarmNetworkRecord

log = logging.getLogger(__name__)

SERVICE_LABELS = ["node", "namespace", "fwmark", "service"]
BACKEND_LABELS = [*SERVICE_LABELS, "backend", "task"]


class IpvsCollector(Collector):
    def __init__(
        self,
        reader: IpvsReader,
        node: str,
        records: Callable[[], Sequence[SwarmNetworkRecord]] | None = None,
        min_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = reader
        self._records = records
        self.node = node
        self._min_interval = min_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: NodeSnapshot | None = None
        self._cached_at = float("-inf")
        self._last_duration = 0.0
        self._errors: dict[tuple[str, str], int] = {}
        self._logged: set[tuple[str, str, str]] = set()
        self._was_available: bool | None = None

    def snapshot(self) -> NodeSnapshot:
        with self._lock:
            now = self._clock()
            if self._cached is not None and now - self._cached_at < self._min_interval:
                return self._cached
            started = time.perf_counter()
            try:
                snap = collect_node(self._reader, self._records)
            except Exception as exc:  # a scrape must always answer
                snap = NodeSnapshot(available=True, errors=[("", "collect", f"{type(exc).__name__}: {exc}")])
            self._last_duration = time.perf_counter() - started
            self._note(snap)
            self._cached, self._cached_at = snap, now
            return snap

    def _note(self, snap: NodeSnapshot) -> None:
        if snap.available != self._was_available:
            if not snap.available:
                log.error(
                    "IPVS is not available on node %s: %s. Reporting swarm_ipvs_available=0 and no "
                    "connection metrics; the agent keeps serving and re-checks on every scrape.",
                    self.node,
                    snap.unavailable_reason,
                )
            elif self._was_available is not None:
                log.info("IPVS is available again on node %s", self.node)
            self._was_available = snap.available
        for ns, stage, message in snap.errors:
            self._errors[(ns, stage)] = self._errors.get((ns, stage), 0) + 1
            if (ns, stage, message) not in self._logged:
                self._logged.add((ns, stage, message))
                log.warning(
                    "IPVS read failed on node %s, namespace %r, stage %s: %s", self.node, ns, stage, message
                )

    def collect(self) -> Iterable[Metric]:
        snap = self.snapshot()
        node = self.node
        available = GaugeMetricFamily(
            "swarm_ipvs_available", "1 when this node's kernel has IPVS and it could be read", labels=["node"]
        )
        available.add_metric([node], 1.0 if snap.available else 0.0)
        yield available
        errors = CounterMetricFamily(
            "swarm_ipvs_read_errors",
            "Failed reads, by namespace and stage",
            labels=["node", "namespace", "stage"],
        )
        for (ns, stage), count in sorted(self._errors.items()):
            errors.add_metric([node, ns, stage], float(count))
        yield errors
        duration = GaugeMetricFamily("swarm_ipvs_read_seconds", "Time the last read took", labels=["node"])
        duration.add_metric([node], self._last_duration)
        yield duration
        yield from _table_metrics(node, snap)


def _table_metrics(node: str, snap: NodeSnapshot) -> Iterable[Metric]:
    def gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=labels)

    readers = gauge(
        "swarm_ipvs_namespace_reader", "1 per namespace read, by reader used", ["node", "namespace", "reader"]
    )
    for ns, how in sorted(snap.readers.items()):
        readers.add_metric([node, ns, how], 1.0)
    yield readers
    active = gauge("swarm_ipvs_active_connections", "Active connections of a virtual service", SERVICE_LABELS)
    inactive = gauge(
        "swarm_ipvs_inactive_connections", "Inactive connections of a virtual service", SERVICE_LABELS
    )
    backends = gauge("swarm_ipvs_backends", "Real servers of a virtual service", SERVICE_LABELS)
    total = CounterMetricFamily(
        "swarm_ipvs_connections",
        "Connections scheduled since the service was created (netlink only)",
        labels=SERVICE_LABELS,
    )
    rate = gauge("swarm_ipvs_connection_rate", "The kernel's connections-per-second estimate", SERVICE_LABELS)
    for s in snap.services:
        labels = [node, s.namespace, s.fwmark, s.service]
        active.add_metric(labels, float(s.active))
        inactive.add_metric(labels, float(s.inactive))
        backends.add_metric(labels, float(s.backends))
        if s.connections_total is not None:
            total.add_metric(labels, float(s.connections_total))
        if s.connection_rate is not None:
            rate.add_metric(labels, s.connection_rate)
    yield from (active, inactive, backends, total, rate)
    b_active = gauge(
        "swarm_ipvs_backend_active_connections", "Active connections of one real server", BACKEND_LABELS
    )
    b_inactive = gauge(
        "swarm_ipvs_backend_inactive_connections", "Inactive connections of one real server", BACKEND_LABELS
    )
    b_weight = gauge("swarm_ipvs_backend_weight", "Weight of one real server (0: draining)", BACKEND_LABELS)
    for b in snap.backends:
        labels = [node, b.namespace, b.fwmark, b.service, b.backend, b.task]
        b_active.add_metric(labels, float(b.active))
        b_inactive.add_metric(labels, float(b.inactive))
        b_weight.add_metric(labels, float(b.weight))
    yield from (b_active, b_inactive, b_weight)


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::]:9105`` for IPv6) -> (host, port), with an error that says how to fix it."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen {listen!r}: expected HOST:PORT, e.g. 0.0.0.0:9105")
    return host.strip("[]") or "0.0.0.0", int(port)
