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

from autoscaler.sources.ipvs.model import ConversionCache, IpvsFormatError, RealServer, VirtualService

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


def genl_messages(buf: bytes, family_id: int, command: int, pos: int = 0) -> Iterator[tuple[int, int]]:
    """(attributes start, end) of each message of ``command`` from byte ``pos`` (a message
    boundary); raises on NLMSG_ERROR."""
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
    message shaped like the last generically decoded one be read in bulk (_DestLayout).
    """
    global _last_layout
    servers: list[RealServer] = []
    pos = 0
    while True:
        layout = _last_layout
        if not with_stats and layout is not None:
            pos = layout.decode_run(buf, pos, service_family, servers)
        # One message the generic way (it raises on anything malformed), then back to bulk.
        for start, end in genl_messages(buf, family_id, IPVS_CMD_NEW_DEST, pos):
            spans = nested_spans(buf, start, end, IPVS_CMD_ATTR_DEST, "dest message")
            for a, b in spans:
                servers.append(_real_server(buf, a, b, service_family, with_stats))
            if not with_stats and len(spans) == 1:
                _last_layout = _DestLayout.learn(buf, start, end, *spans[0]) or _last_layout
            pos = (end + 3) & ~3
            break
        else:
            return servers


_last_layout: _DestLayout | None = None  # immutable once built; swapping it is atomic


class _DestLayout:
    """The exact shape of one decoded IPVS_CMD_NEW_DEST message, reused for the next ones.

    A kernel fills every destination with the same attributes in the same order and sizes
    (ip_vs_genl_fill_dest), and Swarm gives all backends of a node one port (0), forwarding
    method and address family. So after the generic walk of one message, the next messages
    whose headers, port, forwarding method and family are byte-for-byte the same are
    checked with one ``iter_unpack`` and read with another, with no per-attribute Python
    work. Whatever differs (or is not in the kernel's order) goes back to the generic walk,
    which then learns the new shape.
    """

    def __init__(
        self,
        keys: struct.Struct,
        expected: tuple[int, ...],
        values: struct.Struct,
        family: int | None,
        port: int,
        forward: str,
        address_size: int,
    ) -> None:
        self.keys, self.expected, self.values = keys, expected, values
        self.family, self.port, self.forward, self.address_size = family, port, forward, address_size

    @classmethod
    def learn(cls, buf: bytes, start: int, end: int, a: int, b: int) -> _DestLayout | None:
        """The layout of the message whose attributes are buf[start:end], holding only the
        nested destination buf[a:b]; None when it is not one the bulk path can read."""
        msg = start - NLMSGHDR.size - GENLMSGHDR.size
        if a - 4 != start or b != end or (end - msg) % 4:
            return None
        # Keyed: the message's length and type, its genl command, the nest's header.
        key_fmt, value_fmt = ["=IH10xB3xHH"], ["=24x"]
        mtype = NLMSGHDR.unpack_from(buf, msg)[1]
        expected = [end - msg, mtype, buf[msg + NLMSGHDR.size], *NLATTR.unpack_from(buf, a - 4)]
        order: list[int] = []
        family: int | None = None
        port, fwd, address_size = 0, 0, 0
        pos = a
        while pos + 4 <= b:
            length, atype = NLATTR.unpack_from(buf, pos)
            padded = (length + 3) & ~3
            if length < 4 or pos + padded > b:
                return None
            kind, size = atype & NLA_TYPE_MASK, length - 4
            expected += [length, atype]
            if kind in order or (kind in _KEYED and size != struct.calcsize(_KEYED[kind])):
                return None
            if kind in _KEYED:  # read, and required to be the same in every message
                value = struct.unpack_from("=" + _KEYED[kind], buf, pos + 4)[0]
                key_fmt.append(f"HH{_KEYED[kind]}{padded - length}x")
                value_fmt.append(f"{padded}x")
                expected.append(value)
                if kind == DEST_PORT:
                    port = socket.ntohs(value)
                elif kind == DEST_FWD_METHOD:
                    fwd = value
                else:
                    family = value
            elif kind in _VALUES and size == 4:
                key_fmt.append(f"HH{padded - 4}x")
                value_fmt.append(f"4x{_VALUES[kind]}{padded - length}x")
            elif kind == DEST_ADDR and size in (4, 16):
                key_fmt.append(f"HH{padded - 4}x")
                value_fmt.append(f"4x{size}s{padded - length}x")
                address_size = size
            else:
                key_fmt.append(f"HH{padded - 4}x")
                value_fmt.append(f"{padded}x")
            order.append(kind)
            pos += padded
        values_read = [k for k in order if k == DEST_ADDR or k in _VALUES]
        if pos != b or values_read != _VALUE_ORDER:
            return None
        return cls(
            struct.Struct("".join(key_fmt)),
            tuple(expected),
            struct.Struct("".join(value_fmt)),
            family,
            port,
            _FORWARD.get(fwd & 0x7) or f"fwd{fwd}",
            address_size,
        )

    def decode_run(self, buf: bytes, pos: int, service_family: int, out: list[RealServer]) -> int:
        """Append the servers of the messages from ``pos`` that have this layout; returns
        the position of the first message that does not."""
        family = service_family if self.family is None else self.family
        if family == socket.AF_INET6:
            if self.address_size != 16:
                return pos
            address_of = _ipv6_text
        else:
            address_of = _ipv4_text
        size = self.keys.size
        count = (len(buf) - pos) // size
        if count <= 0:
            return pos
        view = memoryview(buf)[pos : pos + count * size]
        # Compared as they are unpacked, never held: a list of 10,000 key tuples would
        # survive into the garbage collector's older generations and slow every collection.
        expected = self.expected
        if sum(map(expected.__eq__, self.keys.iter_unpack(view))) != count:
            keys = self.keys.iter_unpack(view)
            count = next(i for i, key in enumerate(keys) if key != expected)
            view = view[: count * size]
        new, port, forward = tuple.__new__, self.port, self.forward
        out += [
            new(RealServer, (address_of(raw), port, forward, weight, active, inactive, persistent, None))
            for raw, weight, active, inactive, persistent in self.values.iter_unpack(view)
        ]
        return pos + count * size


# Read from the message and part of the layout's key (the same for every backend of a node).
_KEYED = {DEST_PORT: "H", DEST_FWD_METHOD: "I", DEST_ADDR_FAMILY: "H"}
# Read per message, in this order (the kernel's), after the address.
_VALUES = {DEST_WEIGHT: "i", DEST_ACTIVE_CONNS: "I", DEST_INACT_CONNS: "I", DEST_PERSIST_CONNS: "I"}
_VALUE_ORDER = [DEST_ADDR, DEST_WEIGHT, DEST_ACTIVE_CONNS, DEST_INACT_CONNS, DEST_PERSIST_CONNS]


_ipv4_text = ConversionCache[bytes](lambda raw: socket.inet_ntop(socket.AF_INET, raw[:4])).__getitem__
_ipv6_text = ConversionCache[bytes](lambda raw: str(ipaddress.IPv6Address(raw))).__getitem__


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
