"""A policy's own Prometheus queries read back over a time range, as a simulator trace.

``simulate --from-prometheus`` uses it for backtests ("what would this policy have done on
yesterday's traffic?"). It uses prometheus-api-client's range API (``query_range``), which
is synchronous: fine for a one-shot CLI command, never used by the controller's loop.

Each policy metric's query is filled in for the service (``{{ service }}``) exactly as the
controller does; a grouped query (``seriesLabel``) keeps the series whose label is the
service. Times become seconds from ``start``; a step where a query returned nothing is an
empty cell ("no data"), which the simulator treats like the controller does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException

from autoscaler.core.policy import MetricSpec, PolicySpec
from autoscaler.core.trace import Trace
from autoscaler.errors import PermanentSourceError
from autoscaler.sources.promql import TemplateError, fill

# Prometheus refuses a range query of more than 11,000 points per series.
MAX_POINTS = 11_000


def _query_for(metric: MetricSpec, service: str) -> tuple[str, str | None]:
    if metric.prometheus is None:
        raise PermanentSourceError(
            f"metric {metric.name} comes from IPVS, which keeps no history; only Prometheus "
            "metrics can be read back (give a --trace CSV for this policy instead)"
        )
    try:
        return fill(metric.prometheus.query, service), metric.prometheus.series_label
    except TemplateError as exc:
        raise PermanentSourceError(f"metric {metric.name}: {exc}") from None


def _pick_series(
    result: list[dict[str, Any]], metric: str, service: str, label: str | None
) -> list[list[Any]]:
    if label is not None:
        result = [
            r for r in result if isinstance(r.get("metric"), dict) and r["metric"].get(label) == service
        ]
        if not result:
            raise PermanentSourceError(
                f"metric {metric}: no series with {label}={service!r} in the range; check the "
                "query's grouping label and the service name"
            )
    if len(result) > 1:
        raise PermanentSourceError(
            f"metric {metric}: the query returned {len(result)} series over the range; it must return "
            "one number for the service (wrap it in sum(...) or set seriesLabel)"
        )
    return list(result[0]["values"]) if result else []


def read_trace(
    url: str, spec: PolicySpec, service: str, *, start: datetime, end: datetime, step: float
) -> Trace:
    """Every metric of ``spec`` for ``service`` over [start, end] every ``step`` seconds."""
    span = (end - start).total_seconds()
    if span <= 0:
        raise PermanentSourceError(f"--end ({end.isoformat()}) must be after --start ({start.isoformat()})")
    if span / step + 1 > MAX_POINTS:
        raise PermanentSourceError(
            f"{span:g} s at a {step:g} s step is {span / step + 1:.0f} points per query; Prometheus "
            f"allows {MAX_POINTS}: use a larger --step or a shorter range"
        )
    prom = PrometheusConnect(url=url, disable_ssl=True)
    columns: dict[str, dict[float, float | None]] = {}
    for metric in spec.metrics:
        query, label = _query_for(metric, service)
        try:
            result = prom.custom_query_range(query, start_time=start, end_time=end, step=f"{step:g}s")
        except (PrometheusApiClientException, requests.RequestException) as exc:
            raise PermanentSourceError(f"metric {metric.name}: range query to {url} failed: {exc}") from None
        values = _pick_series(result, metric.name, service, label)
        column: dict[float, float | None] = {}
        for ts, raw in values:
            v = float(raw)
            column[float(ts) - start.timestamp()] = None if v != v else v
        columns[metric.name] = column
    times = sorted({t for c in columns.values() for t in c})
    if not times:
        raise PermanentSourceError(
            f"no data for {service} between {start.isoformat()} and {end.isoformat()}: "
            "did the service receive traffic then, and does Prometheus still keep that range?"
        )
    names = tuple(m.name for m in spec.metrics)
    return Trace(
        metric_names=names,
        times=tuple(times),
        values={n: tuple(columns[n].get(t) for t in times) for n in names},
    )
