"""Decode IPVS generic netlink replies: the kernel's attributes, read with ``struct``.

Layout (include/uapi/linux/ip_vs.h, filled by ip_vs_genl_fill_* in ip_vs_ctl.c): a dump of
IPVS_CMD_GET_SERVICE answers IPVS_CMD_NEW_SERVICE messages holding a nested
IPVS_CMD_ATTR_SERVICE; a dump of IPVS_CMD_GET_DEST (asked per service) answers
IPVS_CMD_NEW_DEST messages holding a nested IPVS_CMD_ATTR_DEST. Integers are host order except
ports (be16); addresses are the 16-byte ``union nf_inet_addr``; STATS carries u32 counters and
STATS64 u64 ones, possibly after zero-length IPVS_STATS_ATTR_PAD attributes. We decode by hand
rather than with pyroute2's nlmsg classes: see docs/ipvs.md (speed, and fwmark services and
stats that the high-level pyroute2 API drops).
"""

from __future__ import annotations

import ipaddress
import socket

from ipvs_agent.model import IpvsFormatError, RealServer, VirtualService
from ipvs_agent.netlink_wire import (
    BE16,
    DEST_ACTIVE_CONNS,
    DEST_ADDR,
    DEST_ADDR_FAMILY,
    DEST_FWD_METHOD,
    DEST_INACT_CONNS,
    DEST_PERSIST_CONNS,
    DEST_PORT,
    DEST_STATS,
    DEST_STATS64,
    DEST_WEIGHT,
    FORWARD_NAMES,
    I32,
    IPVS_CMD_ATTR_DEST,
    IPVS_CMD_ATTR_SERVICE,
    IPVS_CMD_NEW_DEST,
    IPVS_CMD_NEW_SERVICE,
    PROTOCOLS,
    STATS_CONNS,
    STATS_CPS,
    SVC_ADDR,
    SVC_AF,
    SVC_FWMARK,
    SVC_PORT,
    SVC_PROTOCOL,
    SVC_SCHED_NAME,
    SVC_STATS,
    SVC_STATS64,
    U16,
    U32,
    U64,
    attribute_spans,
    fixed_int,
    genl_messages,
    nested_spans,
)
from ipvs_agent.netlink_wire import FamilyNotFoundError as FamilyNotFoundError
from ipvs_agent.netlink_wire import NetlinkError as NetlinkError


def _address(buf: bytes, a: int, b: int, family: int, name: str) -> str:
    raw = buf[a:b]
    if family == socket.AF_INET6:
        if len(raw) != 16:
            raise IpvsFormatError(f"netlink: {name} has {len(raw)} bytes, an IPv6 address needs 16")
        return str(ipaddress.IPv6Address(raw))
    if len(raw) not in (4, 16):
        raise IpvsFormatError(f"netlink: {name} has {len(raw)} bytes, expected 4 or 16")
    return socket.inet_ntop(socket.AF_INET, raw[:4])


def _stats(buf: bytes, a: int, b: int, wide: bool) -> tuple[int | None, int | None]:
    """(cumulative connections, connections per second) from a STATS or STATS64 nest."""
    codec = U64 if wide else U32
    spans = attribute_spans(buf, a, b, "stats")
    conns = (
        fixed_int(buf, *spans[STATS_CONNS], codec, "IPVS_STATS_ATTR_CONNS") if STATS_CONNS in spans else None
    )
    cps = fixed_int(buf, *spans[STATS_CPS], codec, "IPVS_STATS_ATTR_CPS") if STATS_CPS in spans else None
    return conns, cps


def decode_services(buf: bytes, family_id: int) -> list[VirtualService]:
    """The virtual services of an IPVS_CMD_GET_SERVICE dump (real servers not included)."""
    services: list[VirtualService] = []
    for start, end in genl_messages(buf, family_id, IPVS_CMD_NEW_SERVICE):
        for a, b in nested_spans(buf, start, end, IPVS_CMD_ATTR_SERVICE, "service message"):
            services.append(_service(buf, a, b))
    return services


def _service(buf: bytes, a: int, b: int) -> VirtualService:
    spans = attribute_spans(buf, a, b, "service")
    if SVC_AF not in spans:
        raise IpvsFormatError("netlink: service without IPVS_SVC_ATTR_AF")
    family = fixed_int(buf, *spans[SVC_AF], U16, "IPVS_SVC_ATTR_AF")
    sched = bytes(buf[slice(*spans[SVC_SCHED_NAME])]).split(b"\0", 1)[0] if SVC_SCHED_NAME in spans else b""
    conns = cps = None
    if SVC_STATS64 in spans:
        conns, cps = _stats(buf, *spans[SVC_STATS64], wide=True)
    elif SVC_STATS in spans:
        conns, cps = _stats(buf, *spans[SVC_STATS], wide=False)
    scheduler = sched.decode("ascii", "replace")
    rate = None if cps is None else float(cps)
    if SVC_FWMARK in spans:
        return VirtualService(
            fwmark=fixed_int(buf, *spans[SVC_FWMARK], U32, "IPVS_SVC_ATTR_FWMARK"),
            protocol=None,
            address=None,
            port=None,
            scheduler=scheduler,
            connections_total=conns,
            connection_rate=rate,
        )
    missing = [
        n for n, t in (("PROTOCOL", SVC_PROTOCOL), ("ADDR", SVC_ADDR), ("PORT", SVC_PORT)) if t not in spans
    ]
    if missing:
        raise IpvsFormatError(f"netlink: service has neither FWMARK nor {', '.join(missing)}")
    proto = fixed_int(buf, *spans[SVC_PROTOCOL], U16, "IPVS_SVC_ATTR_PROTOCOL")
    return VirtualService(
        fwmark=None,
        protocol=PROTOCOLS.get(proto, f"IP_{proto}"),
        address=_address(buf, *spans[SVC_ADDR], family, "IPVS_SVC_ATTR_ADDR"),
        port=fixed_int(buf, *spans[SVC_PORT], BE16, "IPVS_SVC_ATTR_PORT"),
        scheduler=scheduler,
        connections_total=conns,
        connection_rate=rate,
    )


def decode_real_servers(
    buf: bytes, family_id: int, service_family: int, with_stats: bool = False
) -> list[RealServer]:
    """The real servers of an IPVS_CMD_GET_DEST dump.

    Without ``with_stats`` the per-backend STATS nests are skipped: the agent exports active
    and inactive counts per backend, cumulative counts per service only.
    """
    servers: list[RealServer] = []
    for start, end in genl_messages(buf, family_id, IPVS_CMD_NEW_DEST):
        for a, b in nested_spans(buf, start, end, IPVS_CMD_ATTR_DEST, "dest message"):
            servers.append(_real_server(buf, a, b, service_family, with_stats))
    return servers


def _real_server(buf: bytes, a: int, b: int, service_family: int, with_stats: bool) -> RealServer:
    spans = attribute_spans(buf, a, b, "dest")
    for name, t in (
        ("ADDR", DEST_ADDR),
        ("ACTIVE_CONNS", DEST_ACTIVE_CONNS),
        ("INACT_CONNS", DEST_INACT_CONNS),
    ):
        if t not in spans:
            raise IpvsFormatError(f"netlink: destination without IPVS_DEST_ATTR_{name}")
    family = service_family
    if DEST_ADDR_FAMILY in spans:
        family = fixed_int(buf, *spans[DEST_ADDR_FAMILY], U16, "IPVS_DEST_ATTR_ADDR_FAMILY")
    conns = None
    if with_stats and DEST_STATS64 in spans:
        conns = _stats(buf, *spans[DEST_STATS64], wide=True)[0]
    elif with_stats and DEST_STATS in spans:
        conns = _stats(buf, *spans[DEST_STATS], wide=False)[0]
    fwd = (
        fixed_int(buf, *spans[DEST_FWD_METHOD], U32, "IPVS_DEST_ATTR_FWD_METHOD")
        if DEST_FWD_METHOD in spans
        else 0
    )
    weight = fixed_int(buf, *spans[DEST_WEIGHT], I32, "IPVS_DEST_ATTR_WEIGHT") if DEST_WEIGHT in spans else 0
    persist = spans.get(DEST_PERSIST_CONNS)
    return RealServer(
        address=_address(buf, *spans[DEST_ADDR], family, "IPVS_DEST_ATTR_ADDR"),
        port=fixed_int(buf, *spans[DEST_PORT], BE16, "IPVS_DEST_ATTR_PORT") if DEST_PORT in spans else 0,
        forward=FORWARD_NAMES.get(fwd & 0x7, f"fwd{fwd}"),
        weight=weight,
        active_connections=fixed_int(buf, *spans[DEST_ACTIVE_CONNS], U32, "IPVS_DEST_ATTR_ACTIVE_CONNS"),
        inactive_connections=fixed_int(buf, *spans[DEST_INACT_CONNS], U32, "IPVS_DEST_ATTR_INACT_CONNS"),
        persistent_connections=None
        if persist is None
        else fixed_int(buf, *persist, U32, "IPVS_DEST_ATTR_PERSIST_CONNS"),
        connections_total=conns,
    )
