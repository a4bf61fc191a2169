"""IpvsSource against real agents on loopback, each serving a fake node's fixture tables.

Three "nodes" give the same service different fwmarks (marks are per node); the source must
sum them, compute connectionRate from counter growth, and refuse a partial sum.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from timing import FakeClock

from autoscaler.core.observation import MetricRequest
from autoscaler.errors import TemporarySourceError
from autoscaler.sources.ipvs_agents import IpvsSource
from ipvs_agent.agent import IpvsCollector
from ipvs_agent.http import BackgroundAgent, serve_in_thread
from ipvs_agent.mangle import SwarmNetworkRecord, SwarmServiceRecord

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures" / "ipvs"))
import kernel_format as kf
from fake_node import FakeNamespace, FakeNode

ACTIVE = MetricRequest(service="web", metric="conns", kind="ipvs", query="activeConnections")
RATE = MetricRequest(service="web", metric="cps", kind="ipvs", query="connectionRate")


def _node(mark: int, actives: list[int], conns: int, cps: int) -> tuple[FakeNode, list[SwarmNetworkRecord]]:
    svc = kf.Service(
        fwmark=mark,
        conns=conns,
        cps=cps,
        dests=[kf.Dest(f"10.0.0.{9 + i}", active=a) for i, a in enumerate(actives)],
    )
    other = kf.Service(fwmark=mark + 1, conns=5, cps=1, dests=[kf.Dest("10.0.0.50", active=100)])
    node = FakeNode({"ingress_sbox": FakeNamespace(services=[svc, other])})
    record = SwarmNetworkRecord(
        name="ingress",
        id="ingressid",
        ingress=True,
        services=(
            SwarmServiceRecord("web", "10.0.0.5", mark),
            SwarmServiceRecord("db", "10.0.0.6", mark + 1),
        ),
    )
    return node, [record]


class Cluster:
    def __init__(self) -> None:
        self.nodes: list[FakeNode] = []
        self.urls: list[str] = []
        self._servers: list[BackgroundAgent] = []

    def add(self, name: str, mark: int, actives: list[int], conns: int = 0, cps: int = 0) -> FakeNode:
        node, records = _node(mark, actives, conns, cps)
        collector = IpvsCollector(node, node=name, records=lambda: records, min_interval=0)
        server = serve_in_thread(collector, "127.0.0.1:0")
        self._servers.append(server)
        self.nodes.append(node)
        self.urls.append(f"http://127.0.0.1:{server.port}/metrics")
        return node

    def close(self) -> None:
        for server in self._servers:
            server.close()


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    yield c
    c.close()


@pytest.fixture
async def clock_and_source(cluster: Cluster) -> AsyncIterator[tuple[FakeClock, IpvsSource]]:
    cluster.add("node-1", 256, [3, 4], conns=100, cps=5)
    cluster.add("node-2", 300, [1], conns=40, cps=2)  # same service, another node's mark
    cluster.add("node-3", 258, [], conns=0, cps=0)
    clock = FakeClock(1000.0)
    source = IpvsSource(agents=cluster.urls, clock=clock)
    yield clock, source
    await source.close()


async def test_sums_services_across_nodes(
    cluster: Cluster, clock_and_source: tuple[FakeClock, IpvsSource]
) -> None:
    _, source = clock_and_source
    got = await source.fetch([ACTIVE])
    expected = sum(
        d.active for n in cluster.nodes for d in n.namespaces_by_name["ingress_sbox"].services[0].dests
    )
    assert got[ACTIVE].value == expected


async def test_rate_from_kernel_estimate_then_from_counter_growth(
    cluster: Cluster, clock_and_source: tuple[FakeClock, IpvsSource]
) -> None:
    clock, source = clock_and_source
    web = [n.namespaces_by_name["ingress_sbox"].services[0] for n in cluster.nodes]
    first = await source.fetch([RATE])
    assert first[RATE].value == sum(s.cps for s in web)  # first sight: the kernel's estimate
    web[0].conns += 300
    web[1].conns += 60
    clock.now += 20.0
    second = await source.fetch([RATE])
    assert second[RATE].value == pytest.approx((300 + 60) / 20.0)
    web[1].conns = 3  # that node's service was recreated: counter reset, fall back to its estimate
    web[1].cps = 9
    clock.now += 10.0
    third = await source.fetch([RATE])
    # nodes 1 and 3 did not grow (rate 0); node 2 contributes its kernel estimate
    assert third[RATE].value == pytest.approx(web[1].cps)


async def test_one_silent_agent_makes_readings_missing(
    cluster: Cluster, clock_and_source: tuple[FakeClock, IpvsSource]
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/metrics"  # bound, not listening: refused
        source = IpvsSource(agents=[*cluster.urls, dead])
        try:
            got = await source.fetch([ACTIVE, RATE])
        finally:
            await source.close()
    assert got[ACTIVE].value is None
    assert "1 of 4 agents did not answer" in (got[ACTIVE].error or "")
    assert dead in (got[RATE].error or "")


@pytest.fixture
async def no_agent_source() -> AsyncIterator[IpvsSource]:
    """An IpvsSource whose one agent is a port bound but not listening: nothing answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        source = IpvsSource(agents=[f"127.0.0.1:{s.getsockname()[1]}"])
        try:
            yield source
        finally:
            await source.close()


async def test_no_agent_at_all_is_a_temporary_error(no_agent_source: IpvsSource) -> None:
    with pytest.raises(TemporarySourceError, match="no agent answered"):
        await no_agent_source.fetch([ACTIVE])


async def test_agents_found_by_dns_name(cluster: Cluster) -> None:
    cluster.add("node-1", 256, [2, 2])
    port = int(cluster.urls[0].rsplit(":", 1)[1].split("/")[0])
    source = IpvsSource(dns_name="localhost", port=port)  # A records only, like tasks.<service>
    try:
        got = await source.fetch([ACTIVE])
    finally:
        await source.close()
    assert got[ACTIVE].value == 4


async def test_unresolvable_name_is_a_temporary_error() -> None:
    source = IpvsSource(dns_name="tasks.no-such-agent.invalid")
    with pytest.raises(TemporarySourceError, match="cannot resolve"):
        await source.fetch([ACTIVE])


async def test_unknown_service_and_unavailable_nodes_are_explained(cluster: Cluster) -> None:
    cluster.add("node-1", 256, [1])
    bare = FakeNode(has_ipvs=False)
    server = serve_in_thread(IpvsCollector(bare, node="no-ipvs-node", min_interval=0), "127.0.0.1:0")
    source = IpvsSource(agents=[*cluster.urls, f"127.0.0.1:{server.port}"])
    ghost = MetricRequest(service="ghost", metric="c", kind="ipvs", query="activeConnections")
    typo = MetricRequest(service="web", metric="c", kind="ipvs", query="activeConnection")
    try:
        got = await source.fetch([ghost, typo, ACTIVE])
    finally:
        await source.close()
        server.close()
    assert "no IPVS virtual service for 'ghost'" in (got[ghost].error or "")
    assert "no-ipvs-node" in (got[ghost].error or "")
    assert "use activeConnections or connectionRate" in (got[typo].error or "")
    assert got[ACTIVE].value == 1  # a node without IPVS carries no mesh traffic: the others' sum stands


def test_needs_agents_or_a_name() -> None:
    with pytest.raises(ValueError, match=r"tasks\.ipvs-agent"):
        IpvsSource()


async def test_rate_through_the_proc_fallback_says_why_it_is_missing(cluster: Cluster) -> None:
    node = cluster.add("node-1", 256, [3])
    node.namespaces_by_name["ingress_sbox"].via = "procfs"
    source = IpvsSource(agents=cluster.urls)
    try:
        got = await source.fetch([ACTIVE, RATE])
    finally:
        await source.close()
    assert got[ACTIVE].value == 3
    assert "/proc/net/ip_vs" in (got[RATE].error or "")


async def test_load_balancer_view_lists_routed_backends_per_node_service_and_entry(cluster: Cluster) -> None:
    """The failover monitor's view: weight-0 (draining) backends are not routed, an entry with
    no backend left is still an entry, nodes without IPVS and silent agents are named."""
    cluster.add("node-1", 256, [3, 4])
    draining = cluster.add("node-2", 300, [1, 0])
    draining.namespaces_by_name["ingress_sbox"].services[0].dests[1].weight = 0
    cluster.add("node-3", 258, [])
    bare = FakeNode(has_ipvs=False)
    server = serve_in_thread(IpvsCollector(bare, node="no-ipvs-node", min_interval=0), "127.0.0.1:0")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/metrics"  # bound, not listening: refused
        source = IpvsSource(agents=[*cluster.urls, f"127.0.0.1:{server.port}", dead])
        try:
            view = await source.load_balancer_view()
        finally:
            await source.close()
            server.close()
    assert view.routes == {
        "node-1": {
            "web": {"ingress_sbox 256": frozenset({"10.0.0.9", "10.0.0.10"})},
            "db": {"ingress_sbox 257": frozenset({"10.0.0.50"})},
        },
        "node-2": {
            "web": {"ingress_sbox 300": frozenset({"10.0.0.9"})},
            "db": {"ingress_sbox 301": frozenset({"10.0.0.50"})},
        },
        "node-3": {
            "web": {"ingress_sbox 258": frozenset()},
            "db": {"ingress_sbox 259": frozenset({"10.0.0.50"})},
        },
    }
    assert view.unavailable == {"no-ipvs-node"}
    assert len(view.failures) == 1 and dead in view.failures[0]
    assert view.error is None


async def test_load_balancer_view_without_any_agent_is_a_temporary_error(no_agent_source: IpvsSource) -> None:
    with pytest.raises(TemporarySourceError, match="no agent answered"):
        await no_agent_source.load_balancer_view()
