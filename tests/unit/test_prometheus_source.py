"""PrometheusSource against a scripted HTTP server on loopback speaking the query API (POST form).

The server answers from a table (query text -> list of responses, the last one repeating),
so each test states exactly what Prometheus said and counts what was asked.
The real Prometheus is exercised in tests/integration/test_prometheus_real.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import aiohttp
import pytest

from autoscaler.core.decision import MetricReading
from autoscaler.core.observation import MetricRequest
from autoscaler.sources.prometheus import MAX_ANSWER_BYTES, PrometheusSource
from autoscaler.sources.promql import fill


def vector(*series: tuple[dict[str, str], str], at: float | None = None) -> tuple[int, dict[str, Any]]:
    # Stamped now, as Prometheus stamps an instant query's samples with the evaluation time.
    stamp = time.time() if at is None else at
    result = [{"metric": labels, "value": [stamp, value]} for labels, value in series]
    return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}


def scalar(value: str) -> tuple[int, dict[str, Any]]:
    return 200, {"status": "success", "data": {"resultType": "scalar", "result": [time.time(), value]}}


def error(status: int, kind: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"status": "error", "errorType": kind, "error": message}


class ScriptedPrometheus:
    def __init__(self) -> None:
        self.answers: dict[str, list[tuple[int, Any]]] = {}  # body: JSON, or raw bytes
        self.asked: Counter[str] = Counter()
        self.hang: set[str] = set()  # queries answered only once ``release`` is set
        self.drop: Counter[str] = Counter()  # query -> how many of its requests get the connection closed
        self.release = threading.Event()
        script = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                # The instant-query API with the query in a form body, as PrometheusSource sends it.
                assert urlparse(self.path).path == "/api/v1/query"
                form = self.rfile.read(int(self.headers["Content-Length"])).decode()
                query = parse_qs(form)["query"][0]
                script.asked[query] += 1
                if script.drop[query] > 0:
                    script.drop[query] -= 1
                    self.close_connection = True
                    return  # no status line at all: the client sees the connection drop
                if query in script.hang:
                    script.release.wait(timeout=30)
                queue = script.answers.get(query) or [error(400, "bad_data", f"unscripted {query}")]
                status, body = queue.pop(0) if len(queue) > 1 else queue[0]
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def prom() -> Iterator[ScriptedPrometheus]:
    server = ScriptedPrometheus()
    yield server
    server.close()


@pytest.fixture
async def source(prom: ScriptedPrometheus) -> Any:
    src = PrometheusSource(prom.url, timeout=2.0, retries=2)
    yield src
    await src.close()


TEMPLATE = 'sum(rate(requests_total{service="{{ service }}"}[1m]))'


def templated(service: str, metric: str = "rps") -> MetricRequest:
    return MetricRequest(service=service, metric=metric, kind="prometheus", query=TEMPLATE)


GROUPED = "sum by (service) (rate(requests_total[1m]))"


def grouped(service: str) -> MetricRequest:
    return MetricRequest(
        service=service, metric="rps", kind="prometheus", query=GROUPED, series_label="service"
    )


async def test_templated_queries_are_filled_and_deduped_by_text(
    prom: ScriptedPrometheus, source: PrometheusSource
) -> None:
    prom.answers[fill(TEMPLATE, "web")] = [vector(({}, "12.5"))]
    prom.answers[fill(TEMPLATE, 'we"ird')] = [vector(({}, "3"))]
    twice = [templated("web"), templated("web", "rps_again"), templated('we"ird')]
    readings = await source.fetch(twice)
    assert readings[twice[0]].value == 12.5
    assert readings[twice[1]].value == 12.5
    assert readings[twice[2]].value == 3.0
    assert sum(prom.asked.values()) == 2 == source.http_requests


async def test_grouped_query_is_sent_once_and_each_service_picks_its_series(
    prom: ScriptedPrometheus, source: PrometheusSource
) -> None:
    prom.answers[GROUPED] = [
        vector(({"service": "a"}, "1"), ({"service": "b"}, "2"), ({"service": "c"}, "NaN"))
    ]
    wanted = [grouped("a"), grouped("b"), grouped("c"), grouped("absent")]
    readings = await source.fetch(wanted)
    assert [readings[r].value for r in wanted[:2]] == [1.0, 2.0]
    assert readings[wanted[2]].error == "NaN"
    assert readings[wanted[3]].error == "no data"
    assert prom.asked[GROUPED] == 1


async def test_result_shapes(prom: ScriptedPrometheus, source: PrometheusSource) -> None:
    cases: dict[str, tuple[tuple[int, dict[str, Any]], Callable[[MetricReading], bool]]] = {
        "empty": (vector(), lambda r: r.error == "no data"),
        "several": (vector(({"i": "1"}, "1"), ({"i": "2"}, "2")), lambda r: "2 series" in (r.error or "")),
        "nan": (vector(({}, "NaN")), lambda r: r.error == "NaN"),
        "inf": (vector(({}, "+Inf")), lambda r: r.error == "Inf"),
        "scalar": (scalar("4.25"), lambda r: r.value == 4.25),
    }
    requests = {}
    for name, (answer, _) in cases.items():
        prom.answers[f"q_{name}"] = [answer]
        requests[name] = MetricRequest(service="s", metric=name, kind="prometheus", query=f"q_{name}")
    readings = await source.fetch(list(requests.values()))
    for name, (_, check) in cases.items():
        reading = readings[requests[name]]
        assert reading.name == name
        assert check(reading), (name, reading)


async def test_bad_query_is_reported_not_retried_and_does_not_break_others(
    prom: ScriptedPrometheus, source: PrometheusSource
) -> None:
    prom.answers["sum("] = [error(400, "bad_data", "parse error: unexpected end of input")]
    prom.answers["up"] = [vector(({}, "1"))]
    bad = MetricRequest(service="s", metric="broken", kind="prometheus", query="sum(")
    good = MetricRequest(service="s", metric="up", kind="prometheus", query="up")
    readings = await source.fetch([bad, good])
    assert readings[bad].value is None
    why = readings[bad].error or ""
    assert why.startswith("prometheus: HTTP 400")
    assert "parse error" in why
    assert readings[good].value == 1.0
    assert prom.asked["sum("] == 1


async def test_server_errors_are_retried_then_succeed(
    prom: ScriptedPrometheus, source: PrometheusSource
) -> None:
    prom.answers["flaky"] = [error(503, "unavailable", "busy"), vector(({}, "7"))]
    request = MetricRequest(service="s", metric="m", kind="prometheus", query="flaky")
    readings = await source.fetch([request])
    assert readings[request].value == 7.0
    assert prom.asked["flaky"] == 2


async def test_retries_are_bounded(prom: ScriptedPrometheus, source: PrometheusSource) -> None:
    prom.answers["down"] = [error(500, "internal", "boom")]
    request = MetricRequest(service="s", metric="m", kind="prometheus", query="down")
    readings = await source.fetch([request])
    assert readings[request].value is None
    assert "boom" in (readings[request].error or "")
    assert prom.asked["down"] == 3  # retries=2 in the fixture


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_unreachable_prometheus_gives_missing_readings_and_asks_once_per_attempt() -> None:
    source = PrometheusSource(f"http://127.0.0.1:{_closed_port()}", timeout=1.0, retries=1)
    try:
        many = [templated(f"svc{i}") for i in range(40)]
        readings = await source.fetch(many)
    finally:
        await source.close()
    assert all(r.value is None and r.error is not None for r in readings.values())
    assert all("connection refused" in (r.error or "") for r in readings.values())
    # Queries already in flight when the first failure lands still try; the queued rest do not.
    assert source.http_requests < len(many)


async def test_raw_string_template_and_foreign_kind_are_missing_with_reason(source: PrometheusSource) -> None:
    raw = MetricRequest(service="s", metric="m", kind="prometheus", query="up{service=`{{ service }}`}")
    ipvs = MetricRequest(service="s", metric="c", kind="ipvs", query="activeConnections")
    readings = await source.fetch([raw, ipvs])
    assert "raw string" in (readings[raw].error or "")
    assert "ipvs" in (readings[ipvs].error or "")
    assert source.http_requests == 0


def test_bad_url_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="http://"):
        PrometheusSource("localhost:9090")


async def test_a_slow_query_times_out_alone(prom: ScriptedPrometheus) -> None:
    prom.hang.add("slow")
    prom.answers["slow"] = [vector(({}, "1"))]
    prom.answers["fast"] = [vector(({}, "2"))]
    source = PrometheusSource(prom.url, timeout=0.3, retries=1)
    slow = MetricRequest(service="s", metric="slow", kind="prometheus", query="slow")
    fast = MetricRequest(service="s", metric="fast", kind="prometheus", query="fast")
    try:
        readings = await source.fetch([slow, fast])
    finally:
        await source.close()
    assert "no answer within 0.3s" in (readings[slow].error or "")
    assert readings[fast].value == 2.0
    assert prom.asked["slow"] == 2  # a read timeout is retried, within the bound


@pytest.mark.parametrize("drops", [1, 3])
async def test_a_dropped_connection_is_retried_and_blinds_no_other_query(
    prom: ScriptedPrometheus, source: PrometheusSource, drops: int
) -> None:
    prom.drop["dropped"] = drops
    prom.answers["dropped"] = [vector(({}, "5"))]
    others = [MetricRequest(service=f"s{i}", metric="m", kind="prometheus", query=f"q{i}") for i in range(20)]
    for i, request in enumerate(others):
        prom.answers[request.query] = [vector(({}, str(i)))]
    dropped = MetricRequest(service="s", metric="m", kind="prometheus", query="dropped")
    readings = await source.fetch([dropped, *others])
    if drops < 3:  # the fixture allows 3 attempts
        assert readings[dropped].value == 5.0
    else:
        assert "connection to" in (readings[dropped].error or "")
    assert prom.asked["dropped"] == min(drops + 1, 3)
    assert [readings[r].value for r in others] == [float(i) for i in range(20)]


async def test_unusable_answers_are_missing_with_what_prometheus_said(
    prom: ScriptedPrometheus, source: PrometheusSource
) -> None:
    prom.answers["error_in_200"] = [error(200, "execution", "query timed out in expression evaluation")]
    prom.answers["not_json"] = [(200, b"<html>proxy login</html>")]
    prom.answers["no_data"] = [(200, {"status": "success"})]
    prom.answers["proxy_down"] = [(502, b"Bad Gateway"), vector(({}, "9"))]
    asked = {q: MetricRequest(service="s", metric=q, kind="prometheus", query=q) for q in prom.answers}
    readings = await source.fetch(list(asked.values()))
    assert readings[asked["error_in_200"]].error == (
        "prometheus: HTTP 200: execution: query timed out in expression evaluation"
    )
    assert readings[asked["not_json"]].error == "prometheus: unreadable answer: '<html>proxy login</html>'"
    assert "without data.result" in (readings[asked["no_data"]].error or "")
    assert readings[asked["proxy_down"]].value == 9.0  # a 5xx without a JSON body is retried too
    assert prom.asked["error_in_200"] == prom.asked["not_json"] == prom.asked["no_data"] == 1


async def test_a_shared_session_is_used_and_left_open(prom: ScriptedPrometheus) -> None:
    prom.answers["up"] = [vector(({}, "1"))]
    async with aiohttp.ClientSession() as session:
        source = PrometheusSource(prom.url, session=session)
        request = MetricRequest(service="s", metric="up", kind="prometheus", query="up")
        assert (await source.fetch([request]))[request].value == 1.0
        await source.close()
        assert not session.closed
        assert (await source.fetch([request]))[request].value == 1.0
    assert prom.asked["up"] == 2


# --- issue 11, items 5 and 6: answers that must not read as 0, and outside text bounded ---


def ask(query: str) -> MetricRequest:
    return MetricRequest(service="s", metric="m", kind="prometheus", query=query)


async def test_a_200_whose_body_says_error_is_no_reading_even_with_a_zero_in_it(
    prom: ScriptedPrometheus, source: PrometheusSource
) -> None:
    body = {
        "status": "error",
        "errorType": "timeout",
        "error": "partial",
        "data": vector(({}, "0"))[1]["data"],
    }
    prom.answers["q"] = [(200, body)]
    prom.answers["odd"] = [(200, {"status": "partial", "data": vector(({}, "0"))[1]["data"]})]
    readings = await source.fetch([ask("q"), ask("odd")])
    assert (
        readings[ask("q")].value is None
        and readings[ask("q")].error == "prometheus: HTTP 200: timeout: partial"
    )
    assert readings[ask("odd")].value is None
    assert readings[ask("odd")].error == "prometheus: HTTP 200: status 'partial', not 'success'"


@pytest.mark.parametrize("age", [25 * 365 * 86400.0, 301.0, -3600.0], ids=["25-years", "5-minutes", "future"])
async def test_a_sample_stamped_far_from_now_is_no_reading(
    prom: ScriptedPrometheus, source: PrometheusSource, age: float
) -> None:
    prom.answers["q"] = [vector(({}, "0"), at=time.time() - age)]
    reading = (await source.fetch([ask("q")]))[ask("q")]
    assert reading.value is None and not reading.valid
    assert "a stale answer" in (reading.error or "")


async def test_a_sample_within_clock_skew_is_read(prom: ScriptedPrometheus, source: PrometheusSource) -> None:
    prom.answers["q"] = [vector(({}, "7"), at=time.time() - 30)]
    assert (await source.fetch([ask("q")]))[ask("q")].value == 7.0


async def test_a_five_megabyte_error_is_quoted_in_two_hundred_characters(
    prom: ScriptedPrometheus, source: PrometheusSource
) -> None:
    prom.answers["q"] = [error(422, "execution", "x" * 5_000_000)]
    prom.answers["html"] = [(400, b"<html>" + b"y" * 5_000_000)]
    readings = await source.fetch([ask("q"), ask("html")])
    for request in (ask("q"), ask("html")):
        why = readings[request].error or ""
        assert readings[request].value is None and len(why) < 400, why[:500]
    assert (readings[ask("q")].error or "").endswith("... (5,000,000 characters)")


async def test_an_answer_over_the_size_bound_is_refused_unread(
    prom: ScriptedPrometheus, source: PrometheusSource
) -> None:
    series = [
        {"metric": {"service": f"s{i}", "pad": "p" * 200}, "value": [time.time(), "1"]} for i in range(50_000)
    ]
    body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": series}}).encode()
    assert len(body) > MAX_ANSWER_BYTES
    prom.answers["huge"] = [(200, body)]
    reading = (await source.fetch([ask("huge")]))[ask("huge")]
    assert reading.value is None
    assert (reading.error or "").startswith("prometheus: answer larger than 8 MiB")
