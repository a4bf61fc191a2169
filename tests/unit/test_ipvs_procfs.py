"""/proc/net/ip_vs parsing against the exact text ip_vs_ctl.c prints."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipvs_agent.model import IpvsFormatError, RealServer
from ipvs_agent.procfs import parse_ip_vs

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ipvs"
sys.path.insert(0, str(FIXTURES))
import kernel_format as kf  # noqa: E402


def test_swarm_fixture_fwmark_tcp_ipv6_draining_and_empty() -> None:
    services = parse_ip_vs((FIXTURES / "proc_ip_vs_swarm.txt").read_text())
    by_key = {s.key: s for s in services}
    assert list(by_key) == ["fwm:256", "fwm:257", "tcp:10.0.0.2:80", "udp:2001:db8::1:53"]
    web = by_key["fwm:256"]
    assert [rs.address for rs in web.real_servers] == ["10.0.0.9", "10.0.0.10", "10.0.0.11"]
    assert [rs.weight for rs in web.real_servers] == [1, 1, 0]
    assert (web.active_connections, web.inactive_connections) == (3 + 4 + 1, 12 + 9 + 40)
    assert web.connections_total is None  # /proc does not print it
    assert by_key["fwm:257"].real_servers == ()
    persistent = by_key["tcp:10.0.0.2:80"]
    assert persistent.scheduler == "wlc"
    assert persistent.real_servers[0].port == 0x1F90
    assert persistent.real_servers[0].forward == "Route"
    assert persistent.real_servers[0].active_connections == 1234567890
    assert by_key["udp:2001:db8::1:53"].real_servers[0].address == "2001:db8::2"


_addresses = st.ip_addresses(v=4).map(str)
_dests = st.builds(
    kf.Dest,
    address=st.one_of(_addresses, st.ip_addresses(v=6).map(str)),
    port=st.integers(0, 65535),
    forward=st.sampled_from(sorted(kf.FWD_CODES)),
    weight=st.integers(0, 65535),
    active=st.integers(0, 2**31 - 1),
    inactive=st.integers(0, 2**31 - 1),
)
_services = st.one_of(
    st.builds(kf.Service, fwmark=st.integers(1, 2**32 - 1), dests=st.lists(_dests, max_size=5)),
    st.builds(
        kf.Service,
        protocol=st.sampled_from(["TCP", "UDP", "SCTP"]),
        address=_addresses,
        port=st.integers(0, 65535),
        scheduler=st.sampled_from(["rr", "wrr", "lc", "wlc", "sh", "mh"]),
        dests=st.lists(_dests, max_size=5),
        persistent=st.one_of(st.none(), st.tuples(st.integers(1, 86400), st.integers(0, 2**32 - 1))),
        one_packet=st.booleans(),
    ),
)


@settings(deadline=None)  # shared CI machines are slow; correctness, not speed, is checked
@given(st.lists(_services, max_size=8))
def test_round_trip_of_kernel_printed_tables(services: list[kf.Service]) -> None:
    parsed = parse_ip_vs(kf.proc_ip_vs(services))
    assert len(parsed) == len(services)
    for want, got in zip(services, parsed, strict=True):
        assert got.fwmark == want.fwmark
        if want.fwmark is None:
            assert (got.protocol, got.address, got.port) == (want.protocol, want.address, want.port)
        assert got.scheduler == want.scheduler
        assert [(rs.address, rs.port, rs.forward, rs.weight) for rs in got.real_servers] == [
            (str(ipaddress.ip_address(d.address)), d.port, d.forward, d.weight) for d in want.dests
        ]
        assert [(rs.active_connections, rs.inactive_connections) for rs in got.real_servers] == [
            (d.active, d.inactive) for d in want.dests
        ]
        # Whole values, as the model's constructor makes them (the inline path builds them raw).
        assert got.real_servers == tuple(
            RealServer(
                str(ipaddress.ip_address(d.address)), d.port, d.forward, d.weight, d.active, d.inactive
            )
            for d in want.dests
        )


def test_empty_table_has_no_services() -> None:
    assert parse_ip_vs(kf.proc_ip_vs([])) == []


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("", "line 1"),
        ("Hello\n", "line 1"),
        (kf.proc_ip_vs([]) + "  -> 0A000001:0000      Masq    1      0          0\n", "line 4"),
        (kf.proc_ip_vs([]) + "FWM  XYZ rr\n", "line 4: fwmark"),
        (kf.proc_ip_vs([]) + "TCP  0A0001:0050 rr\n", "line 4: IPv4 address"),
        (kf.proc_ip_vs([kf.Service(fwmark=1)]) + "  -> 0A000001:0000      Masq    1      0\n", "line 5"),
        (kf.proc_ip_vs([kf.Service(fwmark=1)]) + "  -> 0A000001:0000      Bogus   1      0  0\n", "line 5"),
    ],
)
def test_garbage_names_the_line(text: str, where: str) -> None:
    with pytest.raises(IpvsFormatError, match=where):
        parse_ip_vs(text)


@settings(deadline=None)  # shared CI machines are slow; correctness, not speed, is checked
@given(st.text(max_size=400))
def test_any_text_parses_or_fails_clearly(text: str) -> None:
    for candidate in (text, kf.proc_ip_vs([]) + text):
        try:
            parse_ip_vs(candidate)
        except IpvsFormatError as exc:
            assert "/proc/net/ip_vs line" in str(exc)
