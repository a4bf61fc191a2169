"""The agent serves real HTTP on loopback; its tables come from kernel-format fixtures.

On this machine (no IPVS) the real CLI is also run: it must stay up, serve /metrics and say
once, clearly, that IPVS is unavailable.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from timing import wait_until

from ipvs_agent.agent import IpvsCollector, parse_listen
from ipvs_agent.collect import collect_node
from ipvs_agent.http import serve_in_thread
from ipvs_agent.mangle import SwarmNetworkRecord, parse_network_inspect

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ipvs"
sys.path.insert(0, str(FIXTURES))
import kernel_format as kf  # noqa: E402
from fake_node import FakeNamespace, FakeNode, mangle_text  # noqa: E402


def _node() -> FakeNode:
    ingress = FakeNamespace(
        services=[
            kf.Service(
                fwmark=256,
                dests=[kf.Dest("10.0.0.9", active=3, inactive=5), kf.Dest("10.0.0.10", weight=0, active=1)],
            ),
            kf.Service(fwmark=0x101, dests=[kf.Dest("10.0.0.12", active=2)]),
        ],
        rules=mangle_text(
            "-A PREROUTING -p tcp -m tcp --dport 8080 -j MARK --set-xmark 0x100/0xffffffff",
            "-A PREROUTING -p udp -m udp --dport 5353 -j MARK --set-xmark 0x101/0xffffffff",
        ),
        via="procfs",
    )
    overlay = FakeNamespace(
        services=[
            kf.Service(fwmark=260, conns=1000, cps=12, dests=[kf.Dest("10.0.2.3", active=7, conns=1000)])
        ],
        rules=mangle_text("-A INPUT -d 10.0.2.2/32 -j MARK --set-xmark 0x104/0xffffffff"),
    )
    return FakeNode({"ingress_sbox": ingress, "lb_7d3fk1m0c": overlay})


def _records() -> list[SwarmNetworkRecord]:
    return [
        parse_network_inspect(json.loads((FIXTURES / name).read_text()))
        for name in ("network_inspect_ingress.json", "network_inspect_overlay.json")
    ]


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _get(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    hits = [
        v
        for (n, lab), v in samples.items()
        if n == name and all(dict(lab).get(k) == w for k, w in labels.items())
    ]
    assert len(hits) == 1, f"{name} {labels}: {len(hits)} series"
    return hits[0]


@pytest.fixture
def served() -> Iterator[tuple[str, FakeNode, IpvsCollector]]:
    node = _node()
    collector = IpvsCollector(node, node="node-a", records=_records, min_interval=0)
    server = serve_in_thread(collector, "127.0.0.1:0")
    try:
        yield f"http://127.0.0.1:{server.port}/metrics", node, collector
    finally:
        server.close()


def test_metrics_per_service_and_backend(served: tuple[str, FakeNode, IpvsCollector]) -> None:
    url, node, _ = served
    samples = _get(url)
    assert _value(samples, "swarm_ipvs_available", node="node-a") == 1
    web = node.namespaces_by_name["ingress_sbox"].services[0]
    assert _value(samples, "swarm_ipvs_active_connections", service="web") == sum(d.active for d in web.dests)
    assert _value(samples, "swarm_ipvs_inactive_connections", service="web") == sum(
        d.inactive for d in web.dests
    )
    # dns has no LocalLBIndex in the record: named through its published port's mangle rule
    assert _value(samples, "swarm_ipvs_active_connections", service="dns", fwmark="257") == 2
    assert _value(samples, "swarm_ipvs_backend_weight", task="web.2.p9q8r7") == 0
    api = node.namespaces_by_name["lb_7d3fk1m0c"].services[0]
    assert (
        _value(samples, "swarm_ipvs_connections_total", service="api", namespace="lb_7d3fk1m0c") == api.conns
    )
    assert _value(samples, "swarm_ipvs_connection_rate", service="api") == api.cps
    assert _value(samples, "swarm_ipvs_namespace_reader", namespace="ingress_sbox") == 1
    assert not [
        k for k in samples if k[0] == "swarm_ipvs_connections_total" and dict(k[1])["service"] == "web"
    ]


def test_a_broken_namespace_is_counted_and_the_rest_still_served(
    served: tuple[str, FakeNode, IpvsCollector], caplog: pytest.LogCaptureFixture
) -> None:
    url, node, _ = served
    node.namespaces_by_name["lb_7d3fk1m0c"].broken = "setns: Operation not permitted"
    with caplog.at_level(logging.WARNING):
        _get(url)
        samples = _get(url)
    assert _value(samples, "swarm_ipvs_read_errors_total", namespace="lb_7d3fk1m0c", stage="ipvs") == 2
    assert _value(samples, "swarm_ipvs_active_connections", service="web") > 0
    assert len([r for r in caplog.records if "Operation not permitted" in r.getMessage()]) == 1


def test_node_without_ipvs_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    collector = IpvsCollector(FakeNode(has_ipvs=False), node="node-b", min_interval=0)
    server = serve_in_thread(collector, "127.0.0.1:0")
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with caplog.at_level(logging.INFO):
            for _ in range(3):
                samples = _get(url)
    finally:
        server.close()
    assert _value(samples, "swarm_ipvs_available", node="node-b") == 0
    assert not [k for k in samples if k[0] == "swarm_ipvs_active_connections"]
    lines = [r.getMessage() for r in caplog.records if "not available" in r.getMessage()]
    assert len(lines) == 1 and "node-b" in lines[0] and "no IPVS" in lines[0]


def test_a_stale_namespace_does_not_hide_that_the_kernel_has_no_ipvs() -> None:
    # Seen on the lab: a removed network left an lb_ file that setns refuses (EINVAL) while
    # the live namespaces report no IPVS; the node is still "IPVS unavailable", with the error kept.
    node = FakeNode(has_ipvs=False)
    node.namespaces_by_name["ingress_sbox"] = FakeNamespace(services=[])
    node.namespaces_by_name["lb_stale0000"] = FakeNamespace(services=[], broken="setns: Invalid argument")
    snapshot = collect_node(node, None)
    assert not snapshot.available
    assert "no IPVS" in snapshot.unavailable_reason
    assert [(ns, stage) for ns, stage, _ in snapshot.errors] == [("lb_stale0000", "ipvs")]


@pytest.mark.parametrize("bad", ["9105", "host:", "host:http", "h:70000"])
def test_listen_errors_say_how_to_fix(bad: str) -> None:
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        parse_listen(bad)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_real_cli_on_this_machine_serves_and_reports_no_ipvs(tmp_path: Path) -> None:
    if Path("/proc/net/ip_vs").exists():
        pytest.skip("this kernel has IPVS; the no-IPVS report cannot be shown here")
    port = _free_port()
    log_path = tmp_path / "agent.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "autoscaler", "ipvs-agent", f"--listen=127.0.0.1:{port}",
             f"--netns-dir={tmp_path / 'netns'}", "--node-name=here", "--docker-host=none"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    try:

        def served() -> Samples | None:
            try:
                return _get(f"http://127.0.0.1:{port}/metrics")
            except OSError:
                assert proc.poll() is None, log_path.read_text()
                return None

        samples = wait_until(served, deadline=60, what="the agent serving /metrics", every=0.1)
        assert _value(samples, "swarm_ipvs_available", node="here") == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0
    text = log_path.read_text()
    assert text.count("IPVS is not available on node here") == 1
    assert "generic netlink family 'IPVS' is not registered" in text
