"""The controller's ``ipvs`` MetricSource: scrape every node's agent and sum per service.

Agents are given as URLs, or as a DNS name whose A records are the agents (``tasks.<agent
service>`` on the controller's overlay network), so IPVS metrics work without Prometheus.
``activeConnections`` is the sum of ``swarm_ipvs_active_connections`` over nodes and
namespaces; ``connectionRate`` is the growth of ``swarm_ipvs_connections_total`` between two
scrapes per series (node, namespace, fwmark, service), falling back to the kernel's own
estimate (``swarm_ipvs_connection_rate``) for a series seen for the first time or reset.

``load_balancer_view`` gives the failover monitor what IPVS routes to: per node, per service,
each IPVS entry's backends (``swarm_ipvs_backend_weight``'s ``backend`` label, weight > 0).

Failure policy: if no agent answers (or the DNS name has no address) ``fetch`` raises
TemporarySourceError. If only some answer, every requested reading is missing: a partial sum
would under-count load and could let the engine scale a busy service down.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from autoscaler.core.decision import MetricReading
from autoscaler.core.load_balancer import LoadBalancerView
from autoscaler.core.observation import MetricRequest
from autoscaler.errors import TemporarySourceError

ACTIVE = "activeConnections"
RATE = "connectionRate"
COUNTERS = (ACTIVE, RATE)

_SeriesKey = tuple[str, str, str, str]  # (node, namespace, fwmark, service)


@dataclass
class AgentScrape:
    """What one agent said: availability and per-series values."""

    url: str
    nodes_unavailable: list[str] = field(default_factory=list)
    nodes_available: list[str] = field(default_factory=list)
    backends: dict[_SeriesKey, dict[str, float]] = field(default_factory=dict)  # address -> weight
    active: dict[_SeriesKey, float] = field(default_factory=dict)
    total: dict[_SeriesKey, float] = field(default_factory=dict)
    kernel_rate: dict[_SeriesKey, float] = field(default_factory=dict)
    at: float = 0.0


def parse_agent_metrics(url: str, text: str, at: float) -> AgentScrape:
    """The IPVS series of one agent's /metrics text. ValueError if it is not exposition text."""
    scrape = AgentScrape(url=url, at=at)
    wanted = {
        "swarm_ipvs_active_connections": scrape.active,
        "swarm_ipvs_connections_total": scrape.total,
        "swarm_ipvs_connection_rate": scrape.kernel_rate,
    }
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "swarm_ipvs_available":
                node = sample.labels.get("node", url)
                (scrape.nodes_available if sample.value else scrape.nodes_unavailable).append(node)
            if sample.name == "swarm_ipvs_backend_weight":
                backends = scrape.backends.setdefault(_series_key(sample.labels, url), {})
                backends[sample.labels.get("backend", "")] = float(sample.value)
            target = wanted.get(sample.name)
            if target is not None:
                target[_series_key(sample.labels, url)] = float(sample.value)
    return scrape


def _series_key(labels: dict[str, str], url: str) -> _SeriesKey:
    """(node, namespace, fwmark, service) of one series; an agent that names no node is its URL."""
    return (
        labels.get("node", url),
        labels.get("namespace", ""),
        labels.get("fwmark", ""),
        labels.get("service", ""),
    )


def load_balancer_view(scrapes: Sequence[AgentScrape], failures: Sequence[str]) -> LoadBalancerView:
    """The agents' answers as the failover tracker reads them (entries of unnamed marks left out)."""
    routes: dict[str, dict[str, dict[str, frozenset[str]]]] = {}
    for scrape in scrapes:
        for node in scrape.nodes_available:
            routes.setdefault(node, {})
        # Every virtual service has an active-connections series, even one with no backend left.
        for key in scrape.active.keys() | scrape.backends.keys():
            node, namespace, fwmark, service = key
            if not service or node not in routes:
                continue
            weights = scrape.backends.get(key, {})
            routed = frozenset(address for address, weight in weights.items() if weight > 0)
            routes[node].setdefault(service, {})[f"{namespace} {fwmark}"] = routed
    unavailable = frozenset(n for s in scrapes for n in s.nodes_unavailable) - routes.keys()
    return LoadBalancerView(routes=routes, unavailable=unavailable, failures=tuple(failures))


class IpvsSource:
    def __init__(
        self,
        agents: Sequence[str] = (),
        dns_name: str | None = None,
        port: int = 9105,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not agents and not dns_name:
            raise ValueError(
                "IpvsSource needs agent URLs (http://node:9105/metrics) or a DNS name whose "
                "A records are the agents (e.g. tasks.ipvs-agent)"
            )
        self._agents = [a if "://" in a else f"http://{a}/metrics" for a in agents]
        self._dns_name = dns_name
        self._port = port
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock
        self._previous: dict[_SeriesKey, tuple[float, float]] = {}  # series -> (total, at)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _urls(self) -> list[str]:
        if self._agents:
            return list(self._agents)
        assert self._dns_name is not None
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                self._dns_name, self._port, family=socket.AF_INET, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise TemporarySourceError(f"ipvs: cannot resolve agents at {self._dns_name!r}: {exc}") from None
        addresses = sorted({info[4][0] for info in infos})
        if not addresses:
            raise TemporarySourceError(f"ipvs: {self._dns_name!r} has no A records: no agent is running")
        return [f"http://{addr}:{self._port}/metrics" for addr in addresses]

    async def _scrape(self, session: aiohttp.ClientSession, url: str) -> AgentScrape | str:
        try:
            async with session.get(url) as resp:
                if resp.status != 200:
                    return f"{url}: HTTP {resp.status}"
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"{url}: {type(exc).__name__}: {exc}".rstrip(": ")
        try:
            return parse_agent_metrics(url, text, self._clock())
        except ValueError as exc:
            return f"{url}: not Prometheus exposition text ({exc})"

    async def scrape_all(self) -> tuple[list[AgentScrape], list[str]]:
        """Every agent's answer and every failure (as 'url: why')."""
        urls = await self._urls()
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        results = await asyncio.gather(*(self._scrape(self._session, url) for url in urls))
        scrapes = [r for r in results if isinstance(r, AgentScrape)]
        failures = [r for r in results if isinstance(r, str)]
        if not scrapes:
            raise TemporarySourceError(f"ipvs: no agent answered: {'; '.join(failures)}")
        return scrapes, failures

    async def load_balancer_view(self) -> LoadBalancerView:
        """Routed backends per node, service and IPVS entry. TemporarySourceError: no agent answered."""
        scrapes, failures = await self.scrape_all()
        return load_balancer_view(scrapes, failures)

    async def fetch(self, requests: Sequence[MetricRequest]) -> dict[MetricRequest, MetricReading]:
        if not requests:
            return {}
        scrapes, failures = await self.scrape_all()
        rates = self._rates(scrapes)
        active: dict[str, float] = {}
        for scrape in scrapes:
            for (_node, _ns, _mark, service), value in scrape.active.items():
                active[service] = active.get(service, 0.0) + value
        unavailable = sorted({n for s in scrapes for n in s.nodes_unavailable})
        out = {}
        for req in requests:
            out[req] = self._reading(req, active, rates, failures, unavailable, len(scrapes))
        return out

    def _reading(
        self,
        req: MetricRequest,
        active: dict[str, float],
        rates: dict[str, float | None],
        failures: list[str],
        unavailable: list[str],
        answered: int,
    ) -> MetricReading:
        if req.kind != "ipvs" or req.query not in COUNTERS:
            return MetricReading.missing(
                req.metric, f"ipvs: unknown counter {req.query!r}; use {' or '.join(COUNTERS)}"
            )
        if failures:
            return MetricReading.missing(
                req.metric,
                f"ipvs: {len(failures)} of {len(failures) + answered} agents did not answer "
                f"({'; '.join(failures)}); a partial sum would under-count",
            )
        table = active if req.query == ACTIVE else rates
        if req.query == RATE and req.service not in rates and req.service in active:
            return MetricReading.missing(
                req.metric,
                f"ipvs: no connection counts for {req.service!r}: the agents read /proc/net/ip_vs, "
                "which has none (give the agents CAP_NET_ADMIN so they can use netlink)",
            )
        if req.service not in table:
            why = f"ipvs: no IPVS virtual service for {req.service!r} on any node"
            if unavailable:
                why += f" (IPVS unavailable on {', '.join(unavailable)})"
            return MetricReading.missing(req.metric, why)
        value = table[req.service]
        if value is None:
            return MetricReading.missing(req.metric, "ipvs: connectionRate needs a second scrape; next tick")
        return MetricReading(name=req.metric, value=value)

    def _rates(self, scrapes: list[AgentScrape]) -> dict[str, float | None]:
        """Per service: sum of per-series rates; None when a series has neither delta nor estimate."""
        rates: dict[str, float | None] = {}
        seen: dict[_SeriesKey, tuple[float, float]] = {}
        for scrape in scrapes:
            for key in scrape.total.keys() | scrape.kernel_rate.keys():
                service = key[3]
                rate = self._series_rate(key, scrape)
                if key in scrape.total:
                    seen[key] = (scrape.total[key], scrape.at)
                current = rates.get(service, 0.0)
                rates[service] = None if rate is None or current is None else current + rate
        self._previous = seen  # series that vanished are forgotten: a reused fwmark starts afresh
        return rates

    def _series_rate(self, key: _SeriesKey, scrape: AgentScrape) -> float | None:
        prev = self._previous.get(key)
        total = scrape.total.get(key)
        if prev is not None and total is not None and total >= prev[0] and scrape.at > prev[1]:
            return (total - prev[0]) / (scrape.at - prev[1])
        return scrape.kernel_rate.get(key)
