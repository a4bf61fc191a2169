"""Bulk reading of IPVS netlink dumps whose messages all have one shape (the kernel's habit).

See docs/ipvs.md (Fast path). Anything this cannot read is left to the generic walk in
``netlink``, which also raises the errors.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from ipvs_agent.model import ConversionCache, RealServer, VirtualService
from ipvs_agent.netlink_wire import (
    DEST_ACTIVE_CONNS,
    DEST_ADDR,
    DEST_ADDR_FAMILY,
    DEST_FWD_METHOD,
    DEST_INACT_CONNS,
    DEST_PERSIST_CONNS,
    DEST_PORT,
    DEST_WEIGHT,
    FORWARD_NAMES,
    GENLMSGHDR,
    NLA_TYPE_MASK,
    NLATTR,
    NLMSGHDR,
    STATS_CONNS,
    STATS_CPS,
    SVC_FWMARK,
    SVC_SCHED_NAME,
    SVC_STATS,
    SVC_STATS64,
)


class DestLayout:
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
    def learn(cls, buf: bytes, start: int, end: int, a: int, b: int) -> DestLayout | None:
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
            FORWARD_NAMES.get(fwd & 0x7) or f"fwd{fwd}",
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
        view = _matching_run(self.keys, self.expected, buf, pos)
        new, port, forward = tuple.__new__, self.port, self.forward
        out += [
            new(RealServer, (address_of(raw), port, forward, weight, active, inactive, persistent, None))
            for raw, weight, active, inactive, persistent in self.values.iter_unpack(view)
        ]
        return pos + len(view)


def _matching_run(keys: struct.Struct, expected: tuple[int, ...], buf: bytes, pos: int) -> memoryview:
    """The messages from ``pos`` on whose keys are ``expected`` (each ``keys.size`` long)."""
    size = keys.size
    count = max(0, (len(buf) - pos) // size)
    view = memoryview(buf)[pos : pos + count * size]
    # Compared as they are unpacked, never held: a list of 10,000 key tuples would survive
    # into the garbage collector's older generations and slow every collection.
    if sum(map(expected.__eq__, keys.iter_unpack(view))) != count:
        count = next(i for i, key in enumerate(keys.iter_unpack(view)) if key != expected)
        view = view[: count * size]
    return view


class ServiceLayout:
    """The same for IPVS_CMD_NEW_SERVICE messages of fwmark services (Swarm's only kind):
    keyed by every attribute header, including those inside the stats nest the generic
    decoder reads (STATS64, else STATS); read: fwmark, scheduler name, connections, rate."""

    def __init__(self, keys: struct.Struct, expected: tuple[int, ...], values: struct.Struct) -> None:
        self.keys, self.expected, self.values = keys, expected, values

    @classmethod
    def learn(cls, buf: bytes, start: int, end: int, a: int, b: int) -> ServiceLayout | None:
        """As DestLayout.learn, for one nested service buf[a:b] that decoded generically."""
        msg = start - NLMSGHDR.size - GENLMSGHDR.size
        if a - 4 != start or b != end or (end - msg) % 4:
            return None
        attrs = _attributes(buf, a, b)
        kinds = [kind for kind, *_ in attrs or ()]
        if attrs is None or len(set(kinds)) != len(kinds) or SVC_FWMARK not in kinds:
            return None
        stats = SVC_STATS64 if SVC_STATS64 in kinds else SVC_STATS
        wide = "Q" if stats == SVC_STATS64 else "I"
        key_fmt, value_fmt = ["=IH10xB3xHH"], ["=24x"]
        mtype = NLMSGHDR.unpack_from(buf, msg)[1]
        expected = [end - msg, mtype, buf[msg + NLMSGHDR.size], *NLATTR.unpack_from(buf, a - 4)]
        read: list[int] = []
        for kind, pos, length, padded in attrs:
            expected += NLATTR.unpack_from(buf, pos)
            if kind == stats:  # keyed down to every inner header; conns and rate read
                inner = _attributes(buf, pos + 4, pos + length)
                if inner is None or length != padded:
                    return None
                key_fmt.append("HH")
                value_fmt.append("4x")
                for inner_kind, inner_pos, inner_length, inner_padded in inner:
                    expected += NLATTR.unpack_from(buf, inner_pos)
                    key_fmt.append(f"HH{inner_padded - 4}x")
                    if inner_kind in (STATS_CONNS, STATS_CPS) and inner_length - 4 == struct.calcsize(wide):
                        value_fmt.append(f"4x{wide}{inner_padded - inner_length}x")
                        read.append(inner_kind)
                    else:
                        value_fmt.append(f"{inner_padded}x")
                continue
            key_fmt.append(f"HH{padded - 4}x")
            if kind == SVC_FWMARK and length == 8:
                value_fmt.append(f"4xI{padded - length}x")
                read.append(kind)
            elif kind == SVC_SCHED_NAME:
                value_fmt.append(f"4x{length - 4}s{padded - length}x")
                read.append(kind)
            else:
                value_fmt.append(f"{padded}x")
        if read != [SVC_FWMARK, SVC_SCHED_NAME, STATS_CONNS, STATS_CPS]:
            return None
        return cls(struct.Struct("".join(key_fmt)), tuple(expected), struct.Struct("".join(value_fmt)))

    def decode_run(self, buf: bytes, pos: int, out: list[VirtualService]) -> int:
        """Append the services of the messages from ``pos`` that have this layout; returns
        the position of the first message that does not."""
        view = _matching_run(self.keys, self.expected, buf, pos)
        new, scheduler_of = tuple.__new__, _scheduler_text
        out += [
            new(VirtualService, (fwmark, None, None, None, scheduler_of(raw), (), conns, float(cps)))
            for fwmark, raw, conns, cps in self.values.iter_unpack(view)
        ]
        return pos + len(view)


def _attributes(buf: bytes, a: int, b: int) -> list[tuple[int, int, int, int]] | None:
    """(kind, position, length, padded length) of each attribute in buf[a:b]; None when they
    do not tile it exactly (the bulk path then declines)."""
    found = []
    pos = a
    while pos < b:
        if pos + 4 > b:
            return None
        length, atype = NLATTR.unpack_from(buf, pos)
        padded = (length + 3) & ~3
        if length < 4 or pos + padded > b:
            return None
        found.append((atype & NLA_TYPE_MASK, pos, length, padded))
        pos += padded
    return found


# Read from the message and part of the layout's key (the same for every backend of a node).
_KEYED = {DEST_PORT: "H", DEST_FWD_METHOD: "I", DEST_ADDR_FAMILY: "H"}
# Read per message, in this order (the kernel's), after the address.
_VALUES = {DEST_WEIGHT: "i", DEST_ACTIVE_CONNS: "I", DEST_INACT_CONNS: "I", DEST_PERSIST_CONNS: "I"}
_VALUE_ORDER = [DEST_ADDR, DEST_WEIGHT, DEST_ACTIVE_CONNS, DEST_INACT_CONNS, DEST_PERSIST_CONNS]


_ipv4_text = ConversionCache[bytes](lambda raw: socket.inet_ntop(socket.AF_INET, raw[:4])).__getitem__
_ipv6_text = ConversionCache[bytes](lambda raw: str(ipaddress.IPv6Address(raw))).__getitem__
_scheduler_text = ConversionCache[bytes](
    lambda raw: raw.split(b"\0", 1)[0].decode("ascii", "replace")
).__getitem__
