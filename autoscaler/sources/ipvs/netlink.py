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
import os
import socket
import struct
from collections.abc import Iterator

from autoscaler.sources.ipvs.model import IpvsFormatError, RealServer, VirtualService

NETLINK_GENERIC = 16
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLA_TYPE_MASK = 0x3FFF  # strips NLA_F_NESTED and NLA_F_NET_BYTEORDER

IPVS_GENL_NAME = "IPVS"
IPVS_GENL_VERSION = 1
IPVS_CMD_NEW_SERVICE = 1
IPVS_CMD_GET_SERVICE = 4
IPVS_CMD_NEW_DEST = 5
IPVS_CMD_GET_DEST = 8
IPVS_CMD_ATTR_SERVICE = 1
IPVS_CMD_ATTR_DEST = 2

SVC_AF, SVC_PROTOCOL, SVC_ADDR, SVC_PORT, SVC_FWMARK, SVC_SCHED_NAME = 1, 2, 3, 4, 5, 6
SVC_STATS, SVC_STATS64 = 10, 12
DEST_ADDR, DEST_PORT, DEST_FWD_METHOD, DEST_WEIGHT = 1, 2, 3, 4
DEST_ACTIVE_CONNS, DEST_INACT_CONNS, DEST_PERSIST_CONNS = 7, 8, 9
DEST_STATS, DEST_ADDR_FAMILY, DEST_STATS64 = 10, 11, 12
STATS_CONNS, STATS_CPS = 1, 6

NLMSGHDR = struct.Struct("=IHHII")
GENLMSGHDR = struct.Struct("=BBH")
NLATTR = struct.Struct("=HH")
U16 = struct.Struct("=H")
U32 = struct.Struct("=I")
U64 = struct.Struct("=Q")
BE16 = struct.Struct("!H")
I32 = struct.Struct("=i")

PROTOCOLS = {6: "TCP", 17: "UDP", 132: "SCTP"}
# IP_VS_CONN_F_FWD_MASK values, named as ip_vs_fwd_name() prints them.
_FORWARD = {0: "Masq", 1: "Local", 2: "Tunnel", 3: "Route"}


class NetlinkError(OSError):
    """The kernel answered a request with an error (errno set)."""


class FamilyNotFoundError(NetlinkError):
    """The generic netlink family is not registered: here, the kernel has no IPVS."""


def _spans(buf: bytes, start: int, end: int, where: str) -> dict[int, tuple[int, int]]:
    """type -> (payload start, payload end) of the attributes in buf[start:end] (last one wins)."""
    spans = {}
    unpack = NLATTR.unpack_from
    pos = start
    while pos + 4 <= end:
        length, atype = unpack(buf, pos)
        if length < 4 or pos + length > end:
            raise IpvsFormatError(f"netlink {where}: attribute at byte {pos} claims length {length}")
        spans[atype & NLA_TYPE_MASK] = (pos + 4, pos + length)
        pos += (length + 3) & ~3
    return spans


def nested_spans(buf: bytes, start: int, end: int, wanted: int, where: str) -> list[tuple[int, int]]:
    """Payload spans of every attribute of type ``wanted`` in buf[start:end], in order."""
    found = []
    unpack = NLATTR.unpack_from
    pos = start
    while pos + 4 <= end:
        length, atype = unpack(buf, pos)
        if length < 4 or pos + length > end:
            raise IpvsFormatError(f"netlink {where}: attribute at byte {pos} claims length {length}")
        if atype & NLA_TYPE_MASK == wanted:
            found.append((pos + 4, pos + length))
        pos += (length + 3) & ~3
    return found


def fixed_int(buf: bytes, a: int, b: int, codec: struct.Struct, name: str) -> int:
    if b - a != codec.size:
        raise IpvsFormatError(f"netlink: {name} has {b - a} bytes, expected {codec.size}")
    value: int = codec.unpack_from(buf, a)[0]
    return value


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
    spans = _spans(buf, a, b, "stats")
    conns = (
        fixed_int(buf, *spans[STATS_CONNS], codec, "IPVS_STATS_ATTR_CONNS") if STATS_CONNS in spans else None
    )
    cps = fixed_int(buf, *spans[STATS_CPS], codec, "IPVS_STATS_ATTR_CPS") if STATS_CPS in spans else None
    return conns, cps


def genl_messages(buf: bytes, family_id: int, command: int) -> Iterator[tuple[int, int]]:
    """(attributes start, end) of each message of ``command``; raises on NLMSG_ERROR."""
    pos = 0
    while pos + NLMSGHDR.size <= len(buf):
        length, mtype, _flags, _seq, _pid = NLMSGHDR.unpack_from(buf, pos)
        if length < NLMSGHDR.size or pos + length > len(buf):
            raise IpvsFormatError(f"netlink: message at byte {pos} claims length {length} of {len(buf)}")
        body = pos + NLMSGHDR.size
        if mtype == NLMSG_DONE:
            return
        if mtype == NLMSG_ERROR:
            if length < NLMSGHDR.size + 4:
                raise IpvsFormatError(f"netlink: truncated error message at byte {pos}")
            code = -I32.unpack_from(buf, body)[0]
            if code:
                raise NetlinkError(code, f"netlink request failed: {os.strerror(code)}")
        elif mtype == family_id:
            if length < NLMSGHDR.size + GENLMSGHDR.size:
                raise IpvsFormatError(f"netlink: message at byte {pos} has no generic netlink header")
            cmd = buf[body]
            if cmd == command:
                yield body + GENLMSGHDR.size, pos + length
        pos += (length + 3) & ~3


def decode_services(buf: bytes, family_id: int) -> list[VirtualService]:
    """The virtual services of an IPVS_CMD_GET_SERVICE dump (real servers not included)."""
    services = []
    for start, end in genl_messages(buf, family_id, IPVS_CMD_NEW_SERVICE):
        for a, b in nested_spans(buf, start, end, IPVS_CMD_ATTR_SERVICE, "service message"):
            services.append(_service(buf, a, b))
    return services


def _service(buf: bytes, a: int, b: int) -> VirtualService:
    spans = _spans(buf, a, b, "service")
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

    Without ``with_stats`` the per-backend STATS nests are skipped (the agent exports active
    and inactive counts per backend, cumulative counts per service only), which lets every
    destination shaped like the first one be decoded with two struct calls (_DestLayout).
    """
    global _last_layout
    servers = []
    for start, end in genl_messages(buf, family_id, IPVS_CMD_NEW_DEST):
        for a, b in nested_spans(buf, start, end, IPVS_CMD_ATTR_DEST, "dest message"):
            layout = _last_layout
            if not with_stats and layout is not None:
                server = layout.decode(buf, a, b, service_family)
                if server is not None:
                    servers.append(server)
                    continue
            servers.append(_real_server(buf, a, b, service_family, with_stats))
            if not with_stats:
                _last_layout = _DestLayout.learn(buf, a, b)
    return servers


_DEST_FIELDS = {
    DEST_PORT: "H",  # be16 read natively, swapped with ntohs below
    DEST_FWD_METHOD: "I",
    DEST_WEIGHT: "i",
    DEST_ACTIVE_CONNS: "I",
    DEST_INACT_CONNS: "I",
    DEST_PERSIST_CONNS: "I",
    DEST_ADDR_FAMILY: "H",
}


_last_layout: _DestLayout | None = None  # immutable once built; swapping it is atomic


class _DestLayout:
    """The exact attribute layout of one decoded destination, reused for the next ones.

    One kernel fills every destination with the same attributes in the same order and sizes
    (ip_vs_genl_fill_dest), so after the generic walk of the first one we check the next
    one's attribute headers with one struct call and read all its values with another. Any
    difference in the headers falls back to the generic walk.
    """

    def __init__(
        self, headers: struct.Struct, expected: tuple[int, ...], values: struct.Struct, names: list[int]
    ) -> None:
        self.headers, self.expected, self.values = headers, expected, values
        at = {kind: i for i, kind in enumerate(names)}
        self.i_addr, self.i_active, self.i_inactive = (
            at[DEST_ADDR],
            at[DEST_ACTIVE_CONNS],
            at[DEST_INACT_CONNS],
        )
        self.i_port = at.get(DEST_PORT, -1)
        self.i_fwd = at.get(DEST_FWD_METHOD, -1)
        self.i_weight = at.get(DEST_WEIGHT, -1)
        self.i_persist = at.get(DEST_PERSIST_CONNS, -1)
        self.i_family = at.get(DEST_ADDR_FAMILY, -1)

    @classmethod
    def learn(cls, buf: bytes, a: int, b: int) -> _DestLayout | None:
        header_fmt, value_fmt, expected, names = ["="], ["="], [], []
        pos = a
        while pos + 4 <= b:
            length, atype = NLATTR.unpack_from(buf, pos)
            padded = (length + 3) & ~3
            if length < 4 or pos + padded > b:
                return None
            header_fmt.append(f"HH{padded - 4}x")
            expected += [length, atype]
            kind = atype & NLA_TYPE_MASK
            fmt = f"{length - 4}s" if kind == DEST_ADDR else _DEST_FIELDS.get(kind)
            if fmt is not None and struct.calcsize("=" + fmt) == length - 4:
                value_fmt.append(f"4x{fmt}{padded - length}x")
                names.append(kind)
            else:
                value_fmt.append(f"{padded}x")
            pos += padded
        if pos != b or not {DEST_ADDR, DEST_ACTIVE_CONNS, DEST_INACT_CONNS} <= set(names):
            return None
        return cls(
            struct.Struct("".join(header_fmt)), tuple(expected), struct.Struct("".join(value_fmt)), names
        )

    def decode(self, buf: bytes, a: int, b: int, service_family: int) -> RealServer | None:
        if b - a != self.headers.size or self.headers.unpack_from(buf, a) != self.expected:
            return None
        v = self.values.unpack_from(buf, a)
        family = v[self.i_family] if self.i_family >= 0 else service_family
        raw = v[self.i_addr]
        if family == socket.AF_INET6:
            address = str(ipaddress.IPv6Address(raw)) if len(raw) == 16 else None
        else:
            address = socket.inet_ntop(socket.AF_INET, raw[:4]) if len(raw) in (4, 16) else None
        if address is None:
            return None  # let the generic walk report it
        fwd = v[self.i_fwd] if self.i_fwd >= 0 else 0
        return RealServer(
            address,
            socket.ntohs(v[self.i_port]) if self.i_port >= 0 else 0,
            _FORWARD.get(fwd & 0x7) or f"fwd{fwd}",
            v[self.i_weight] if self.i_weight >= 0 else 0,
            v[self.i_active],
            v[self.i_inactive],
            v[self.i_persist] if self.i_persist >= 0 else None,
        )


def _real_server(buf: bytes, a: int, b: int, service_family: int, with_stats: bool) -> RealServer:
    spans = _spans(buf, a, b, "dest")
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
        forward=_FORWARD.get(fwd & 0x7, f"fwd{fwd}"),
        weight=weight,
        active_connections=fixed_int(buf, *spans[DEST_ACTIVE_CONNS], U32, "IPVS_DEST_ATTR_ACTIVE_CONNS"),
        inactive_connections=fixed_int(buf, *spans[DEST_INACT_CONNS], U32, "IPVS_DEST_ATTR_INACT_CONNS"),
        persistent_connections=None
        if persist is None
        else fixed_int(buf, *persist, U32, "IPVS_DEST_ATTR_PERSIST_CONNS"),
        connections_total=conns,
    )
