"""PrometheusSource against the real Prometheus binary scraping a real exporter on loopback."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator

import pytest
from prom_helpers import PROMETHEUS_BINARY, Exporter, RealPrometheus
from timing import wait_until

from autoscaler.core.observation import MetricRequest
from autoscaler.sources.prometheus import PrometheusSource

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which(PROMETHEUS_BINARY) is None,
        reason=f"no Prometheus binary at {PROMETHEUS_BINARY}: install Debian's `prometheus` package",
    ),
]

# Names a template must survive: quotes, backslashes, newline, PromQL syntax, non-ASCII.
LOADS = {
    "web": 12.5,
    'we"ird': 3.0,
    "back\\slash": 7.25,
    "two\nlines": 1.5,
    '"} or vector(1000) or app_load{service="': 0.5,
    "café-😀": 9.0,
    "api.v1": 4.0,
    "apixv1": 5.0,
}
TEMPLATE = 'app_load{service="{{ service }}"}'
GROUPED = "sum by (service) (app_load)"


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    exp = Exporter()
    for service, value in LOADS.items():
        exp.set(service, value)
    exp.set("multi", 1.0, instance="a")
    exp.set("multi", 2.0, instance="b")
    yield exp
    exp.close()


@pytest.fixture(scope="module")
def prometheus(exporter: Exporter) -> Iterator[RealPrometheus]:
    prom = RealPrometheus([f"127.0.0.1:{exporter.port}"])
    prom.start()
    try:
        expected = len(LOADS) + 2
        wait_until(
            lambda: len(prom.query("app_load")) == expected,
            deadline=30,
            what=f"{expected} app_load series scraped",
        )
        yield prom
    finally:
        prom.destroy()


@pytest.fixture
async def source(prometheus: RealPrometheus) -> AsyncIterator[PrometheusSource]:
    src = PrometheusSource(prometheus.url, timeout=3.0, retries=1)
    yield src
    await src.close()


def templated(service: str, query: str = TEMPLATE) -> MetricRequest:
    return MetricRequest(service=service, metric="load", kind="prometheus", query=query)


def grouped(service: str) -> MetricRequest:
    return MetricRequest(
        service=service, metric="load", kind="prometheus", query=GROUPED, series_label="service"
    )


async def test_templated_values_for_awkward_names(
    prometheus: RealPrometheus, source: PrometheusSource
) -> None:
    requests = [templated(name) for name in LOADS]
    before = prometheus.query_requests_served()
    readings = await source.fetch(requests)
    served = prometheus.query_requests_served() - before
    assert {r.service: readings[r].value for r in requests} == LOADS
    assert served == len(LOADS) == source.http_requests


async def test_regex_matcher_selects_only_the_named_service(source: PrometheusSource) -> None:
    requests = [templated(name, 'app_load{service=~"{{ service }}"}') for name in LOADS]
    readings = await source.fetch(requests)
    assert {r.service: readings[r].value for r in requests} == LOADS


async def test_grouped_query_is_one_request_for_every_service(
    prometheus: RealPrometheus, source: PrometheusSource
) -> None:
    requests = [grouped(name) for name in LOADS]
    before = prometheus.query_requests_served()
    readings = await source.fetch(requests)
    assert prometheus.query_requests_served() - before == 1
    assert {r.service: readings[r].value for r in requests} == LOADS


async def test_missing_several_nan_and_bad_query(source: PrometheusSource) -> None:
    absent = templated("no-such-service")
    several = templated("multi")
    nan = MetricRequest(service="web", metric="ratio", kind="prometheus", query="vector(0) / 0")
    bad = MetricRequest(service="web", metric="broken", kind="prometheus", query="sum(app_load")
    good = templated("web")
    readings = await source.fetch([absent, several, nan, bad, good])
    assert readings[absent].error == "no data"
    assert "2 series" in (readings[several].error or "")
    assert readings[nan].error == "NaN"
    broken = readings[bad].error or ""
    assert broken.startswith("prometheus: HTTP 400") and "parse error" in broken
    assert readings[good].value == LOADS["web"]


async def test_stopped_prometheus_is_missing_with_reason_then_recovers(
    prometheus: RealPrometheus, source: PrometheusSource
) -> None:
    request = templated("web")
    prometheus.stop()
    try:
        down = await source.fetch([request])
        assert down[request].value is None
        assert "connection refused" in (down[request].error or "")
    finally:
        prometheus.start()
    wait_until(lambda: len(prometheus.query("app_load")) > 0, deadline=30, what="series after restart")
    back = await source.fetch([request])
    assert back[request].value == LOADS["web"]
