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
each in that one place. Answers are outside text and bounded (issue 11): at most
``MAX_ANSWER_BYTES`` are read, any text of theirs that reaches a reason (and so the log
and /decisions) is cut to ``MAX_QUOTED_CHARS``, an answer is usable only with
``"status": "success"``, and a sample stamped more than ``MAX_SAMPLE_SKEW`` seconds away
from now (a cache, a proxy replaying an old answer) is no reading at all, never a 0.
Tenacity retries, bounded, only what can succeed on retry (connection errors, timeouts,
5xx). prometheus-api-client stays a dependency for the tools that use its range-query
API; the controller's instant queries need one POST each.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from autoscaler.core.decision import MetricReading
from autoscaler.core.observation import MetricRequest
from autoscaler.sources.promql import TemplateError, fill

# A grouped query over a thousand services answers ~200 KB; 8 MiB is room for far more,
# and bounds what one tick may parse (a 124 MB answer cost 385 MB of RSS per tick).
MAX_ANSWER_BYTES = 8 * 1024 * 1024
# Prometheus' own words (an error message, a body that is not JSON) quoted in a reason.
MAX_QUOTED_CHARS = 200
# An instant query's samples carry the evaluation time, which is now: allow for clock skew
# between the controller and Prometheus, not for a sample from another day.
MAX_SAMPLE_SKEW = 300.0

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


def _quoted(text: object) -> str:
    """Outside text for a reason: cut to ``MAX_QUOTED_CHARS``, saying how long it was."""
    shown = str(text)
    if len(shown) <= MAX_QUOTED_CHARS:
        return shown
    return f"{shown[:MAX_QUOTED_CHARS]}... ({len(shown):,} characters)"


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
        text = body[:MAX_QUOTED_CHARS].decode(errors="replace")
        if status >= 500:
            raise _Retryable(f"HTTP {status}: {text}")
        raise _QueryFailed(f"HTTP {status}: {text}" if status != 200 else f"unreadable answer: {text!r}")
    if payload.get("status") != "success" or status != 200:
        # HTTP 200 with "status": "error" (some proxies and Thanos/Cortex front ends) is a
        # failed query whatever data it also carries.
        said = payload.get("status")
        kind, error = payload.get("errorType", ""), payload.get("error", "")
        if said == "error" or error:
            reason = f"HTTP {status}: {_quoted(kind)}: {_quoted(error)}"
        else:
            reason = f"HTTP {status}: status {_quoted(said)!r}, not 'success'"
        if status >= 500:
            raise _Retryable(reason)
        raise _QueryFailed(reason)
    data = payload.get("data")
    if not isinstance(data, dict) or "result" not in data:
        raise _QueryFailed(f"answer without data.result: {body[:MAX_QUOTED_CHARS].decode(errors='replace')}")
    return data["result"]


def _parse_value(raw: Any, now: float) -> tuple[float | None, str | None]:
    try:
        stamp, value = float(raw[0]), float(raw[1])
    except (TypeError, ValueError, IndexError):
        return None, f"prometheus: not a [time, number] sample: {_quoted(repr(raw))}"
    if not math.isfinite(stamp) or abs(now - stamp) > MAX_SAMPLE_SKEW:
        age = now - stamp if math.isfinite(stamp) else stamp
        return None, (
            f"prometheus: sample stamped {age:,.0f} s from now (more than {MAX_SAMPLE_SKEW:g} s): "
            "a stale answer (a cache or proxy?), or the clocks disagree"
        )
    if math.isnan(value):
        return None, "NaN"
    if math.isinf(value):
        return None, "Inf"
    return value, None


def _parse_result(result: Any, now: float) -> list[_Series]:
    """Series of an instant query's ``data.result``, told apart by shape (scalar, vector, matrix)."""
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        value, error = _parse_value(result, now)  # a scalar: [time, "value"]
        return [_Series({}, value, error)]
    if not isinstance(result, list):
        raise _QueryFailed(f"unexpected result shape {type(result).__name__}")
    series: list[_Series] = []
    for item in result:
        if not isinstance(item, dict) or "value" not in item:
            raise _QueryFailed("query returned a range vector; write an instant-vector query")
        value, error = _parse_value(item["value"], now)
        labels = item.get("metric", {})
        series.append(_Series(dict(labels) if isinstance(labels, dict) else {}, value, error))
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
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"Prometheus URL {url!r} must start with http:// or https://")
        if timeout <= 0 or retries < 0:
            raise ValueError(f"timeout must be > 0 and retries >= 0 (got {timeout}, {retries})")
        self.url = url.rstrip("/")
        self._timeout = timeout
        self._attempts = retries + 1
        self._given = session
        self._clock = clock  # wall time: what Prometheus stamps its samples with
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
                        answer = await self._send(text)
                        return _parse_result(answer, self._clock())
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
                status, body = response.status, await _read_bounded(response)
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
            raise _Retryable(f"connection to {self.url} lost: {type(exc).__name__}: {_quoted(exc)}") from exc
        except aiohttp.ClientError as exc:
            raise _Retryable(f"request failed: {type(exc).__name__}: {_quoted(exc)}") from exc
        return _answer_of(status, body)


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    """The body, refused past ``MAX_ANSWER_BYTES`` (counted after decompression)."""
    declared = response.content_length
    if declared is not None and declared > MAX_ANSWER_BYTES:
        raise _QueryFailed(_too_large(f"{declared:,} bytes declared"))
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise _QueryFailed(_too_large("still sending"))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(what: str) -> str:
    return (
        f"answer larger than {MAX_ANSWER_BYTES // (1024 * 1024)} MiB ({what}); "
        "aggregate the query (sum by (...)) so it returns one series per service"
    )
