"""fwmark -> service mapping read back from real iptables rules in a network namespace.

The test creates its own namespace (prefix ``ipvst``), writes the mangle rules the way
libnetwork's fwMarker does (PREROUTING by published port, INPUT by VIP) plus rules Swarm never
writes, reads them with ``nsenter ... iptables-save`` through read_mangle_rules, maps them with
the fixture network records, and deletes the namespace at the end. The last test reads a
node of the lab's real Swarm (Docker's own records and namespaces).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipvs_agent.collect import collect_node
from ipvs_agent.mangle import MarkRule, map_fwmarks, parse_network_inspect, read_mangle_rules
from ipvs_agent.netns import HostIpvs
from ipvs_agent.swarm_records import docker_network_records
from swarm_lab import layout
from swarm_lab.sessions import LabHandle

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ipvs"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="creating a network namespace needs root"),
    pytest.mark.skipif(
        shutil.which("iptables") is None or shutil.which("nsenter") is None,
        reason="needs the iptables and nsenter binaries (Debian packages iptables, util-linux)",
    ),
]


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"ipvst{os.getpid()}"
    _run("ip", "netns", "add", name)
    try:
        yield f"/run/netns/{name}"
    finally:
        _run("ip", "netns", "del", name)


def _iptables(netns: str, rule: str) -> None:
    _run("nsenter", f"--net={netns}", "--", "iptables", *rule.split())


def test_ingress_rules_map_by_index_port_and_vip(netns: str) -> None:
    # What fwMarker writes in ingress_sbox for three services, the last one (legacy) known to
    # Swarm's record only by VIP and published port, with no LocalLBIndex.
    for rule in (
        "-t mangle -A PREROUTING -p tcp --dport 8080 -j MARK --set-mark 256",
        "-t mangle -A INPUT -d 10.0.0.5/32 -j MARK --set-mark 256",
        "-t mangle -A PREROUTING -p udp --dport 5353 -j MARK --set-mark 0x101",
        "-t mangle -A INPUT -d 10.0.0.8/32 -j MARK --set-mark 258",
        # noise Swarm never writes: must be ignored, not mis-mapped
        "-t mangle -A PREROUTING -p tcp ! --dport 22 -j MARK --set-mark 999",
        "-t mangle -A PREROUTING -p tcp --dport 8443 -j MARK --set-xmark 0x4/0x4",
        "-t mangle -A INPUT -d 10.0.0.0/24 -j MARK --set-mark 998",
        "-t mangle -A PREROUTING -p tcp --dport 8080 -j ACCEPT",
    ):
        _iptables(netns, rule)

    rules = read_mangle_rules(netns)
    assert set(rules) == {
        MarkRule("PREROUTING", 256, "tcp", 8080, None),
        MarkRule("INPUT", 256, None, None, "10.0.0.5"),
        MarkRule("PREROUTING", 0x101, "udp", 5353, None),
        MarkRule("INPUT", 258, None, None, "10.0.0.8"),
    }
    record = parse_network_inspect(json.loads((FIXTURES / "network_inspect_ingress.json").read_text()))
    assert record.namespace_name == "ingress_sbox"
    owners = map_fwmarks(rules, record.services)
    assert {mark: (o.service, o.evidence) for mark, o in owners.items()} == {
        256: ("web", "LocalLBIndex"),
        0x101: ("dns", "published port 5353"),
        258: ("legacy", "VIP 10.0.0.8"),
    }
    assert owners[256].tasks == {"10.0.0.9": "web.1.k2l1x0", "10.0.0.10": "web.2.p9q8r7"}


def test_overlay_lb_namespace_maps_by_vip(netns: str) -> None:
    for rule in (
        "-t mangle -A INPUT -d 10.0.2.2/32 -j MARK --set-mark 260",
        "-t mangle -A INPUT -d 10.0.2.6/32 -j MARK --set-mark 261",
    ):
        _iptables(netns, rule)
    record = parse_network_inspect(json.loads((FIXTURES / "network_inspect_overlay.json").read_text()))
    assert record.namespace_name == "lb_7d3fk1m0c"
    owners = map_fwmarks(read_mangle_rules(netns), record.services)
    assert {mark: o.service for mark, o in owners.items()} == {260: "api", 261: "worker"}
    assert owners[261].tasks == {"10.0.2.7": "worker.1.cccccc"}


def test_empty_namespace_has_no_marks(netns: str) -> None:
    assert read_mangle_rules(netns) == []


def test_missing_namespace_is_a_clear_error() -> None:
    with pytest.raises(OSError, match="nsenter"):
        read_mangle_rules("/run/netns/ipvst-does-not-exist")


def test_real_swarm_node_records_namespaces_and_no_ipvs(lab: LabHandle) -> None:
    """Against the lab's real Swarm: Docker's verbose inspect parses, names a namespace file that
    dockerd really created, its real mangle table reads through nsenter, and the whole node
    read reports this kernel's missing IPVS instead of failing."""
    node = layout.nodes(len(lab.node_urls))[0]
    netns_dir = node.exec_root / "netns"
    records = docker_network_records(lab.node_urls[0])
    ingress = [r for r in records if r.ingress]
    assert len(ingress) == 1, f"one ingress network expected, got {[r.name for r in records]}"
    assert ingress[0].namespace_name in HostIpvs(netns_dir).namespaces()
    rules = read_mangle_rules(str(netns_dir / ingress[0].namespace_name))
    owners = map_fwmarks(rules, ingress[0].services)
    published = {port: s.name for s in ingress[0].services for port in s.published_ports}
    for rule in rules:  # whatever Swarm marked here must map to the service publishing that port
        if rule.dport in published:
            assert owners[rule.fwmark].service == published[rule.dport]
    snapshot = collect_node(HostIpvs(netns_dir), lambda: records)
    if Path("/proc/net/ip_vs").exists():
        assert snapshot.available
    else:
        assert not snapshot.available
        assert "no IPVS" in snapshot.unavailable_reason
