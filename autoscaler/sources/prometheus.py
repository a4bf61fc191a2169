"""Metric readings from Prometheus' instant-query API.

One ``fetch`` sends one HTTP query per distinct query text: templated queries are filled
(``autoscaler.sources.promql``) and deduplicated by their filled text; grouped queries
(``series_label`` set) are sent once and every service picks its own series out of the answer.

Failure policy: ``fetch`` never raises because Prometheus failed. Every request a failure
touches gets ``MetricReading.missing(metric, "prometheus: <why>")`` and the others are
unaffected, so one bad query cannot blind every policy, and a missing reading is what
keeps the engine from scaling down on no data. Once one query finds Prometheus unreachable
(after its retries), the queries of the same fetch still queued are answered with the same
reason instead of each waiting out their own timeouts against a dead server.

prometheus-api-client is synchronous (requests), so queries run on a small private thread
pool. The client's own urllib3 retries are switched off: tenacity retries here, bounded,
and only what can succeed on retry (connection errors, timeouts, 5xx).
"""

from __future__ import annotations

import ast
import asyncio
import json
import math
import threading
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)
from urllib3.exceptions import NameResolutionError, NewConnectionError
from urllib3.util.retry import Retry

from autoscaler.core.decision import MetricReading
from autoscaler.core.observation import MetricRequest
from autoscaler.sources.promql import TemplateError, fill

# Matches requests' default connection pool size, so no connection is opened only to be dropped.
QUERY_THREADS = 8


class _Retryable(Exception):
    """A failure worth another attempt: connection error, timeout or 5xx."""


class _Unreachable(_Retryable):
    """Prometheus could not be reached at all (as opposed to answering with an error)."""


class _QueryFailed(Exception):
    """Prometheus answered, but not with a usable result (bad query, 4xx)."""


@dataclass(frozen=True, slots=True)
class _Series:
    labels: dict[str, str]
    value: float | None
    error: str | None


def _status_and_reason(exc: PrometheusApiClientException) -> tuple[int | None, str]:
    """Prometheus' own error text out of the client's ``HTTP Status Code N (b'...')`` message."""
    message = str(exc)
    status: int | None = None
    prefix = "HTTP Status Code "
    if message.startswith(prefix):
        code, _, rest = message[len(prefix) :].partition(" ")
        status = int(code) if code.isdigit() else None
        try:
            body = ast.literal_eval(rest.strip()[1:-1])
            payload = json.loads(body)
            return status, f"HTTP {status}: {payload.get('errorType', '')}: {payload.get('error', body)}"
        except (ValueError, SyntaxError, TypeError, AttributeError):
            return status, f"HTTP {status}: {rest[:200]}"
    return status, message[:200]


def _parse_value(raw: Any) -> tuple[float | None, str | None]:
    try:
        value = float(raw[1])
    except (TypeError, ValueError, IndexError):
        return None, f"prometheus: not a number: {raw!r:.80}"
    if math.isnan(value):
        return None, "NaN"
    if math.isinf(value):
        return None, "Inf"
    return value, None


def _parse_result(result: Any) -> list[_Series]:
    """Series of an instant query's ``data.result`` (the client drops ``resultType``)."""
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        value, error = _parse_value(result)  # a scalar: [time, "value"]
        return [_Series({}, value, error)]
    if not isinstance(result, list):
        raise _QueryFailed(f"unexpected result shape {type(result).__name__}")
    series: list[_Series] = []
    for item in result:
        if not isinstance(item, dict) or "value" not in item:
            raise _QueryFailed("query returned a range vector; write an instant-vector query")
        value, error = _parse_value(item["value"])
        series.append(_Series(dict(item.get("metric", {})), value, error))
    return series


def _pick_single(metric: str, series: list[_Series]) -> MetricReading:
    if not series:
        return MetricReading.missing(metric, "no data")
    if len(series) > 1:
        return MetricReading.missing(
            metric,
            f"prometheus: query returned {len(series)} series, expected one; "
            "aggregate it (e.g. sum(...)) or set seriesLabel to group it by service",
        )
    only = series[0]
    return MetricReading(metric, only.value, only.error)


def _by_label(series: list[_Series], label: str) -> dict[str, list[_Series]]:
    """Series indexed by one label's value, so N services pick theirs in O(N), not O(N²)."""
    index: dict[str, list[_Series]] = defaultdict(list)
    for one in series:
        value = one.labels.get(label)
        if value is not None:
            index[value].append(one)
    return index


def _pick_grouped(request: MetricRequest, label: str, mine: list[_Series]) -> MetricReading:
    if not mine:
        return MetricReading.missing(request.metric, "no data")
    if len(mine) > 1:
        return MetricReading.missing(
            request.metric,
            f"prometheus: {len(mine)} series have {label}={request.service!r}; "
            f"group the query by {label} only (e.g. sum by ({label}) (...))",
        )
    return MetricReading(request.metric, mine[0].value, mine[0].error)


class PrometheusSource:
    """Fetches ``MetricRequest``s of kind "prometheus" from one Prometheus server."""

    def __init__(self, url: str, *, timeout: float = 5.0, retries: int = 2) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"Prometheus URL {url!r} must start with http:// or https://")
        if timeout <= 0 or retries < 0:
            raise ValueError(f"timeout must be > 0 and retries >= 0 (got {timeout}, {retries})")
        self.url = url.rstrip("/")
        self._timeout = timeout
        self._attempts = retries + 1
        self._client = PrometheusConnect(
            url=self.url,
            # read=False makes urllib3 re-raise a read timeout as itself, so requests reports a
            # ReadTimeout instead of burying it in a ConnectionError.
            retry=Retry(total=0, read=False, raise_on_status=False),
            timeout=timeout,
        )
        self._pool = ThreadPoolExecutor(max_workers=QUERY_THREADS, thread_name_prefix="prometheus")
        self._lock = threading.Lock()
        self.http_requests = 0  # attempts sent, retries included; read by bench and tests

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self._client.close)

    async def fetch(self, requests_: Sequence[MetricRequest]) -> dict[MetricRequest, MetricReading]:
        readings: dict[MetricRequest, MetricReading] = {}
        by_query: dict[str, list[MetricRequest]] = defaultdict(list)
        for request in requests_:
            if request.kind != "prometheus":
                readings[request] = MetricReading.missing(
                    request.metric, f"prometheus: cannot fetch a {request.kind!r} metric"
                )
                continue
            try:
                text = request.query if request.series_label else fill(request.query, request.service)
            except (TemplateError, ValueError) as exc:
                readings[request] = MetricReading.missing(request.metric, f"prometheus: {exc}")
                continue
            by_query[text].append(request)

        unreachable: list[str] = []  # first connection failure of this fetch, shared by the threads
        loop = asyncio.get_running_loop()
        texts = list(by_query)
        outcomes = await asyncio.gather(
            *(loop.run_in_executor(self._pool, self._query, text, unreachable) for text in texts)
        )
        for text, outcome in zip(texts, outcomes, strict=True):
            indexes: dict[str, dict[str, list[_Series]]] = {}
            for request in by_query[text]:
                if isinstance(outcome, str):
                    readings[request] = MetricReading.missing(request.metric, f"prometheus: {outcome}")
                elif request.series_label:
                    label = request.series_label
                    if label not in indexes:
                        indexes[label] = _by_label(outcome, label)
                    mine = indexes[label].get(request.service, [])
                    readings[request] = _pick_grouped(request, label, mine)
                else:
                    readings[request] = _pick_single(request.metric, outcome)
        return readings

    def _query(self, text: str, unreachable: list[str]) -> list[_Series] | str:
        """Series of one query, or why there are none. Runs on the thread pool."""
        if unreachable:
            return unreachable[0]
        try:
            for attempt in Retrying(
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential(multiplier=0.1, max=1.0),
                retry=retry_if_exception_type(_Retryable),
                reraise=True,
            ):
                with attempt:
                    return _parse_result(self._send(text))
        except _Unreachable as exc:
            unreachable.append(str(exc))
            return str(exc)
        except (_Retryable, _QueryFailed, RetryError) as exc:
            return str(exc)
        raise AssertionError("unreachable: Retrying either returns or raises")

    def _send(self, text: str) -> Any:
        with self._lock:
            self.http_requests += 1
        try:
            return self._client.custom_query(text)
        except requests.ConnectTimeout as exc:
            raise _Unreachable(f"no connection to {self.url} within {self._timeout:g}s") from exc
        except requests.ReadTimeout as exc:
            # Only this query may be slow: the others of the fetch still get their chance.
            raise _Retryable(f"no answer within {self._timeout:g}s ({self.url})") from exc
        except requests.ConnectionError as exc:
            if _could_not_connect(exc):
                raise _Unreachable(f"cannot connect to {self.url}: {_root_cause(exc)}") from exc
            # An established (often pooled keep-alive) connection dropped: that says nothing
            # about the other queries, so only this one is retried.
            raise _Retryable(f"connection to {self.url} lost: {_root_cause(exc)}") from exc
        except requests.RequestException as exc:
            raise _Retryable(f"request failed: {exc}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise _QueryFailed(f"unreadable answer from {self.url}: {exc}") from exc
        except PrometheusApiClientException as exc:
            status, reason = _status_and_reason(exc)
            if status is not None and status >= 500:
                raise _Retryable(reason) from exc
            raise _QueryFailed(reason) from exc


def _could_not_connect(exc: requests.ConnectionError) -> bool:
    """Whether no TCP connection could be made at all (refused, unroutable, DNS)."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError | NameResolutionError)


def _root_cause(exc: requests.ConnectionError) -> str:
    text = str(exc)
    return "connection refused" if "refused" in text.lower() else text[:160]
