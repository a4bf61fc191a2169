"""The generic netlink wire format of IPVS: constants from include/uapi/linux/ip_vs.h and
genetlink.h, and the helpers that walk messages and attributes (shared by the decoder in
``netlink`` and by the socket in ``netlink_socket``)."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

from autoscaler.errors import AutoscalerError
from ipvs_agent.model import IpvsFormatError

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
FORWARD_NAMES = {0: "Masq", 1: "Local", 2: "Tunnel", 3: "Route"}


class NetlinkError(AutoscalerError, OSError):
    """The kernel answered a request with an error (errno set)."""


class FamilyNotFoundError(NetlinkError):
    """The generic netlink family is not registered: here, the kernel has no IPVS."""


def attributes(buf: bytes, start: int, end: int, where: str) -> Iterator[tuple[int, int, int]]:
    """(type, payload start, payload end) of each attribute in buf[start:end], in order;
    raises on one whose length runs outside them."""
    unpack = NLATTR.unpack_from
    pos = start
    while pos + 4 <= end:
        length, atype = unpack(buf, pos)
        if length < 4 or pos + length > end:
            raise IpvsFormatError(f"netlink {where}: attribute at byte {pos} claims length {length}")
        yield atype & NLA_TYPE_MASK, pos + 4, pos + length
        pos += (length + 3) & ~3


def attribute_spans(buf: bytes, start: int, end: int, where: str) -> dict[int, tuple[int, int]]:
    """type -> (payload start, payload end) of the attributes in buf[start:end] (last one wins)."""
    return {atype: (a, b) for atype, a, b in attributes(buf, start, end, where)}


def nested_spans(buf: bytes, start: int, end: int, wanted: int, where: str) -> list[tuple[int, int]]:
    """Payload spans of every attribute of type ``wanted`` in buf[start:end], in order."""
    return [(a, b) for atype, a, b in attributes(buf, start, end, where) if atype == wanted]


def fixed_int(buf: bytes, a: int, b: int, codec: struct.Struct, name: str) -> int:
    if b - a != codec.size:
        raise IpvsFormatError(f"netlink: {name} has {b - a} bytes, expected {codec.size}")
    value: int = codec.unpack_from(buf, a)[0]
    return value


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
