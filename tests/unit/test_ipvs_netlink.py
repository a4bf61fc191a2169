"""IPVS generic netlink decoding on message bytes packed to the kernel's attribute layout.

The bytes come from tests/fixtures/ipvs/kernel_format.py (written from ip_vs.h and
ip_vs_genl_fill_*), not from the code under test. The socket half is exercised against this
machine's real kernel, which has no IPVS: the family lookup must say so.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipvs_agent.model import IpvsFormatError
from ipvs_agent.netlink import (
    FamilyNotFoundError,
    NetlinkError,
    decode_real_servers,
    decode_services,
)
from ipvs_agent.netlink_socket import IpvsNetlink, service_selector

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures" / "ipvs"))
import kernel_format as kf

FAMILY = 0x1B  # the kernel hands out dynamic ids; any value that is not a control type will do

_dests = st.builds(
    kf.Dest,
    address=st.ip_addresses(v=4).map(str),
    port=st.integers(0, 65535),
    forward=st.sampled_from(sorted(kf.FWD_CODES)),
    weight=st.integers(0, 2**31 - 1),
    active=st.integers(0, 2**32 - 1),
    inactive=st.integers(0, 2**32 - 1),
    persist=st.integers(0, 2**32 - 1),
    conns=st.integers(0, 2**32 - 1),
)
# Swarm's backends all have port 0 and Masq.
_swarm_dests = _dests.map(lambda d: kf.Dest(d.address, 0, "Masq", d.weight, d.active, d.inactive, d.persist))
_services = st.one_of(
    st.builds(
        kf.Service,
        fwmark=st.integers(1, 2**32 - 1),
        conns=st.integers(0, 2**32 - 1),
        cps=st.integers(0, 2**32 - 1),
    ),
    st.builds(
        kf.Service,
        protocol=st.sampled_from(["TCP", "UDP", "SCTP"]),
        address=st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str)),
        port=st.integers(0, 65535),
        scheduler=st.sampled_from(["rr", "wlc", "mh"]),
        conns=st.integers(0, 2**32 - 1),
        cps=st.integers(0, 2**32 - 1),
    ),
)


@settings(deadline=None)  # shared CI machines are slow; correctness, not speed, is checked
@given(st.lists(_services, max_size=6), st.booleans())
def test_service_dump_round_trip(services: list[kf.Service], pad: bool) -> None:
    decoded = decode_services(kf.service_dump(FAMILY, services, pad=pad), FAMILY)
    assert len(decoded) == len(services)
    for want, got in zip(services, decoded, strict=True):
        assert got.fwmark == want.fwmark
        if want.fwmark is None:
            assert got.protocol == want.protocol
            assert got.address == str(ipaddress.ip_address(want.address))
            assert got.port == want.port
        assert got.scheduler == want.scheduler
        assert got.connections_total == want.conns
        assert got.connection_rate == want.cps


@settings(deadline=None)  # shared CI machines are slow; correctness, not speed, is checked
@given(st.lists(_dests, max_size=12), st.booleans(), st.booleans())
def test_dest_dump_round_trip(dests: list[kf.Dest], pad: bool, with_stats: bool) -> None:
    decoded = decode_real_servers(kf.dest_dump(FAMILY, dests, pad=pad), FAMILY, socket.AF_INET, with_stats)
    assert [(d.address, d.port, d.forward, d.weight) for d in dests] == [
        (rs.address, rs.port, rs.forward, rs.weight) for rs in decoded
    ]
    assert [(d.active, d.inactive, d.persist, d.conns if with_stats else None) for d in dests] == [
        (rs.active_connections, rs.inactive_connections, rs.persistent_connections, rs.connections_total)
        for rs in decoded
    ]


@settings(deadline=None)  # shared CI machines are slow; correctness, not speed, is checked
@given(st.lists(st.tuples(_dests, st.booleans()), min_size=2, max_size=8))
def test_destinations_of_mixed_shapes_in_one_dump(specs: list[tuple[kf.Dest, bool]]) -> None:
    # An IPv6 or padded destination among IPv4 ones: each must still decode.
    buf = b"".join(kf.genl_message(FAMILY, 5, kf.dest_attrs(d, pad)) for d, pad in specs) + kf.done_message()
    decoded = decode_real_servers(buf, FAMILY, socket.AF_INET)
    assert [(rs.address, rs.active_connections, rs.weight) for rs in decoded] == [
        (d.address, d.active, d.weight) for d, _ in specs
    ]


@settings(deadline=None)  # shared CI machines are slow; correctness, not speed, is checked
@given(
    st.lists(st.tuples(st.one_of(_dests, _swarm_dests), st.booleans()), min_size=1, max_size=20),
    st.integers(0, 40),
)
def test_skipping_stats_changes_no_other_value(specs: list[tuple[kf.Dest, bool]], cut: int) -> None:
    # with_stats=False skips the STATS nests: same values, same errors, also on a truncated dump.
    buf = b"".join(kf.genl_message(FAMILY, 5, kf.dest_attrs(d, pad)) for d, pad in specs) + kf.done_message()
    for candidate in (buf, buf[: len(buf) - cut]):
        outcomes = []
        for with_stats in (True, False):
            try:
                servers = decode_real_servers(candidate, FAMILY, socket.AF_INET, with_stats)
                outcomes.append([rs._replace(connections_total=None) for rs in servers])
            except IpvsFormatError as exc:
                outcomes.append(str(exc))
        assert outcomes[0] == outcomes[1]


@settings(deadline=None)  # shared CI machines are slow; correctness, not speed, is checked
@given(
    st.lists(
        st.builds(kf.Service, fwmark=st.integers(1, 2**32 - 1), conns=st.integers(0, 2**32 - 1)), min_size=2
    ),
    st.integers(0, 40),
)
def test_runs_of_swarm_services_match_the_kernel_bytes(services: list[kf.Service], cut: int) -> None:
    # A run of same-shaped fwmark services (Swarm's dump) with a TCP service in the middle.
    services.insert(len(services) // 2, kf.Service(protocol="TCP", address="10.0.0.2", port=80))
    messages = [kf.genl_message(FAMILY, 1, kf.service_attrs(s)) for s in services]
    decoded = decode_services(b"".join(messages) + kf.done_message(), FAMILY)
    assert [(s.fwmark, s.scheduler, s.connections_total, s.connection_rate) for s in decoded] == [
        (s.fwmark, s.scheduler, s.conns, s.cps) for s in services
    ]
    if cut:  # a dump cut inside its last message is reported at that message's offset
        truncated = b"".join(messages)[:-cut]
        with pytest.raises(IpvsFormatError, match=f"message at byte {len(b''.join(messages[:-1]))} "):
            decode_services(truncated, FAMILY)


def test_swarm_shaped_dump_with_draining_backend_and_empty_service() -> None:
    services = [kf.Service(fwmark=0x100, conns=500, cps=7), kf.Service(fwmark=0x101)]
    decoded = decode_services(kf.service_dump(FAMILY, services), FAMILY)
    assert [s.key for s in decoded] == ["fwm:256", "fwm:257"]
    dests = [kf.Dest("10.0.1.5", active=3, inactive=2), kf.Dest("10.0.1.6", weight=0, active=1, inactive=8)]
    servers = decode_real_servers(kf.dest_dump(FAMILY, dests), FAMILY, socket.AF_INET)
    assert [rs.weight for rs in servers] == [1, 0]
    assert decode_real_servers(kf.dest_dump(FAMILY, []), FAMILY, socket.AF_INET) == []


def test_messages_of_other_commands_and_families_are_skipped() -> None:
    noise = kf.genl_message(FAMILY + 1, 1, kf.service_attrs(kf.Service(fwmark=9)))
    noise += kf.genl_message(FAMILY, 5, kf.dest_attrs(kf.Dest("10.0.0.1")))
    buf = noise + kf.service_dump(FAMILY, [kf.Service(fwmark=7)])
    assert [s.fwmark for s in decode_services(buf, FAMILY)] == [7]


def test_kernel_error_becomes_netlink_error() -> None:
    with pytest.raises(NetlinkError) as info:
        decode_services(kf.error_message(errno.EPERM), FAMILY)
    assert info.value.errno == errno.EPERM


def test_selector_names_the_service_like_ipvsadm_does() -> None:
    from ipvs_agent.model import VirtualService

    fwm = VirtualService(fwmark=0x100, protocol=None, address=None, port=None, scheduler="rr")
    # The selector is exactly the service attributes the kernel needs: AF then FWMARK, nested.
    assert service_selector(fwm) == kf.nla(
        1,
        kf.nla(1, (2).to_bytes(2, sys.byteorder)) + kf.nla(5, (0x100).to_bytes(4, sys.byteorder)),
        nested=True,
    )


@pytest.mark.parametrize(
    "buf",
    [
        kf.genl_message(FAMILY, 1, b"\xff\xff\x01\x00"),  # attribute longer than the message
        kf.genl_message(FAMILY, 1, kf.nla(1, kf.nla(5, b"\x01\x00"), nested=True)),  # no AF
        kf.genl_message(FAMILY, 1, kf.nla(1, kf.nla(1, b"\x02\x00") + kf.nla(5, b"\x01"), nested=True)),
        b"\x40\x00\x00\x00" + b"\x00" * 12,  # message claims 64 bytes, has 16
    ],
)
def test_malformed_bytes_fail_clearly(buf: bytes) -> None:
    with pytest.raises(IpvsFormatError, match="netlink"):
        decode_services(buf, FAMILY)


@settings(deadline=None)  # shared CI machines are slow; correctness, not speed, is checked
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_fail_clearly(buf: bytes) -> None:
    for candidate in (buf, kf.genl_message(FAMILY, 1, buf), kf.genl_message(FAMILY, 5, buf)):
        try:
            decode_services(candidate, FAMILY)
            decode_real_servers(candidate, FAMILY, socket.AF_INET)
        except (IpvsFormatError, NetlinkError):
            pass


def test_real_kernel_without_ipvs_reports_missing_family() -> None:
    with IpvsNetlink() as nl:
        assert nl.family_id("nlctrl") == 0x10  # the socket code works against this kernel
        try:
            nl.family_id("IPVS")
        except FamilyNotFoundError as exc:
            assert exc.errno == errno.ENOENT
        else:
            pytest.skip("this kernel has IPVS; the no-IPVS path cannot be shown here")


def _pyroute2_messages(buf: bytes) -> list:  # type: ignore[type-arg]
    import struct

    from pyroute2.netlink.generic.ipvs import ipvsmsg

    out = []
    off = 0
    while off < len(buf):
        length, mtype = struct.unpack_from("=IH", buf, off)
        if mtype == FAMILY:
            msg = ipvsmsg(buf[off : off + length])
            msg.decode()
            out.append(msg)
        off += (length + 3) & ~3
    return out


@settings(deadline=None)  # shared CI machines are slow; correctness, not speed, is checked
@given(st.lists(_services, min_size=1, max_size=4), st.lists(_dests, min_size=1, max_size=4))
def test_fixture_bytes_read_the_same_through_pyroute2(
    services: list[kf.Service], dests: list[kf.Dest]
) -> None:
    # An independent decoder (pyroute2's ipvsmsg) agrees with ours on the fixture bytes, so
    # the test-side encoder and our decoder cannot share one misreading of ip_vs.h.
    ours = decode_services(kf.service_dump(FAMILY, services), FAMILY)
    theirs = [
        m.get_attr("IPVS_CMD_ATTR_SERVICE") for m in _pyroute2_messages(kf.service_dump(FAMILY, services))
    ]
    for mine, other in zip(ours, theirs, strict=True):
        assert mine.fwmark == other.get_attr("IPVS_SVC_ATTR_FWMARK")
        assert mine.port == other.get_attr("IPVS_SVC_ATTR_PORT")
        assert mine.connections_total == other.get_attr("IPVS_SVC_ATTR_STATS64").get_attr(
            "IPVS_STATS_ATTR_CONNS"
        )
        assert mine.connection_rate == other.get_attr("IPVS_SVC_ATTR_STATS").get_attr("IPVS_STATS_ATTR_CPS")
    buf = kf.dest_dump(FAMILY, dests)
    mine_d = decode_real_servers(buf, FAMILY, socket.AF_INET)
    theirs_d = [m.get_attr("IPVS_CMD_ATTR_DEST") for m in _pyroute2_messages(buf)]
    for rs, other in zip(mine_d, theirs_d, strict=True):
        assert rs.address == other.get_attr("IPVS_DEST_ATTR_ADDR")
        assert rs.port == other.get_attr("IPVS_DEST_ATTR_PORT")
        assert rs.active_connections == other.get_attr("IPVS_DEST_ATTR_ACTIVE_CONNS")
        assert rs.inactive_connections == other.get_attr("IPVS_DEST_ATTR_INACT_CONNS")
        assert rs.weight == other.get_attr("IPVS_DEST_ATTR_WEIGHT")
