"""Metric readings from Prometheus' instant-query HTTP API (``POST /api/v1/query``), with aiohttp.

One ``fetch`` sends one HTTP query per distinct query text: templated queries are filled
(``autoscaler.sources.promql``) and deduplicated by their filled text; grouped queries
(``series_label`` set) are sent once and every service picks its own series out of the answer.

Failure policy: ``fetch`` never raises because Prometheus failed. Every request a failure
touches gets ``MetricReading.missing(metric, "prometheus: <why>")`` and the others are
unaffected, so one bad query cannot blind every policy, and a missing reading is what
keeps the engine from scaling down on no data. Once one query finds Prometheus unreachable
(after its retries), the queries of the same fetch still queued are answered with the same
reason instead of each waiting out their own timeouts against a dead server.

Transport errors are mapped in ``_send`` and answers read and checked in ``_answer_of``,
each in that one place. Tenacity retries, bounded, only what can succeed on retry
(connection errors, timeouts, 5xx). prometheus-api-client stays a dependency for the tools
that use its range-query API; the controller's instant queries need one POST each.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from autoscaler.core.decision import MetricReading
from autoscaler.core.observation import MetricRequest
from autoscaler.sources.promql import TemplateError, fill

# Queries in flight at once per fetch: enough to overlap round trips, few enough not to
# flood Prometheus when a thousand services each have their own query.
QUERY_CONCURRENCY = 8
QUERY_PATH = "/api/v1/query"


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


def _answer_of(status: int, body: bytes) -> Any:
    """``data.result`` of one query API answer, or why there is none: the one place answers are checked."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        payload = None
    if not isinstance(payload, dict):
        text = body[:200].decode(errors="replace")
        if status >= 500:
            raise _Retryable(f"HTTP {status}: {text}")
        raise _QueryFailed(f"HTTP {status}: {text}" if status != 200 else f"unreadable answer: {text!r}")
    if payload.get("status") == "error" or status != 200:
        reason = f"HTTP {status}: {payload.get('errorType', '')}: {payload.get('error', '')}"
        if status >= 500:
            raise _Retryable(reason)
        raise _QueryFailed(reason)
    data = payload.get("data")
    if not isinstance(data, dict) or "result" not in data:
        raise _QueryFailed(f"answer without data.result: {body[:200].decode(errors='replace')}")
    return data["result"]


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
    """Series of an instant query's ``data.result``, told apart by shape (scalar, vector, matrix)."""
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
        return MetricReading.empty(metric)
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
        return MetricReading.empty(request.metric)
    if len(mine) > 1:
        return MetricReading.missing(
            request.metric,
            f"prometheus: {len(mine)} series have {label}={request.service!r}; "
            f"group the query by {label} only (e.g. sum by ({label}) (...))",
        )
    return MetricReading(request.metric, mine[0].value, mine[0].error)


class PrometheusSource:
    """Fetches ``MetricRequest``s of kind "prometheus" from one Prometheus server.

    ``session`` is an aiohttp session the caller owns and shares (never closed here);
    without one, a session is made on first use and closed by ``close()``.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        retries: int = 2,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"Prometheus URL {url!r} must start with http:// or https://")
        if timeout <= 0 or retries < 0:
            raise ValueError(f"timeout must be > 0 and retries >= 0 (got {timeout}, {retries})")
        self.url = url.rstrip("/")
        self._timeout = timeout
        self._attempts = retries + 1
        self._given = session
        self._own: aiohttp.ClientSession | None = None
        self.http_requests = 0  # attempts sent, retries included; read by bench and tests

    def _session(self) -> aiohttp.ClientSession:
        if self._given is not None:
            return self._given
        # Made on first use: aiohttp wants its session created inside the running event loop.
        if self._own is None:
            self._own = aiohttp.ClientSession()
        return self._own

    async def close(self) -> None:
        """Close the session made here (never one the caller passed in)."""
        if self._own is not None:
            await self._own.close()
            self._own = None

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

        unreachable: list[str] = []  # first connection failure of this fetch, shared by the queries
        slots = asyncio.Semaphore(QUERY_CONCURRENCY)
        texts = list(by_query)
        outcomes = await asyncio.gather(*(self._query(text, unreachable, slots) for text in texts))
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

    async def _query(
        self, text: str, unreachable: list[str], slots: asyncio.Semaphore
    ) -> list[_Series] | str:
        """Series of one query, or why there are none."""
        async with slots:
            if unreachable:
                return unreachable[0]
            try:
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(self._attempts),
                    wait=wait_exponential(multiplier=0.1, max=1.0),
                    retry=retry_if_exception_type(_Retryable),
                    reraise=True,
                ):
                    with attempt:
                        return _parse_result(await self._send(text))
            except _Unreachable as exc:
                unreachable.append(str(exc))
                return str(exc)
            except (_Retryable, _QueryFailed) as exc:
                return str(exc)
        raise AssertionError("unreachable: AsyncRetrying either returns or raises")

    async def _send(self, text: str) -> Any:
        """One ``POST /api/v1/query``: transport errors mapped here, the answer read by ``_answer_of``."""
        self.http_requests += 1
        # A bounded connect, so a dead server is told apart from a slow query.
        timeout = aiohttp.ClientTimeout(total=self._timeout, sock_connect=self._timeout)
        try:
            async with self._session().post(
                self.url + QUERY_PATH, data={"query": text}, timeout=timeout
            ) as response:
                status, body = response.status, await response.read()
        except aiohttp.ConnectionTimeoutError as exc:
            raise _Unreachable(f"no connection to {self.url} within {self._timeout:g}s") from exc
        except aiohttp.ClientConnectorError as exc:
            # No TCP connection could be made at all (refused, unroutable, DNS).
            refused = isinstance(exc.os_error, ConnectionRefusedError)
            reason = "connection refused" if refused else str(exc)[:160]
            raise _Unreachable(f"cannot connect to {self.url}: {reason}") from exc
        except TimeoutError as exc:
            # Only this query may be slow: the others of the fetch still get their chance.
            raise _Retryable(f"no answer within {self._timeout:g}s ({self.url})") from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as exc:
            # An established (often pooled keep-alive) connection dropped: that says nothing
            # about the other queries, so only this one is retried.
            raise _Retryable(f"connection to {self.url} lost: {type(exc).__name__}: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise _Retryable(f"request failed: {type(exc).__name__}: {exc}") from exc
        return _answer_of(status, body)
