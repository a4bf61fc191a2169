"""The IPVS generic netlink conversation: family lookup, service and destination dumps.

A plain ``AF_NETLINK`` socket from the standard library (three small requests; see
docs/ipvs.md); replies are decoded by ``ipvs_agent.netlink``.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

from ipvs_agent.model import VirtualService
from ipvs_agent.netlink import decode_real_servers, decode_services
from ipvs_agent.netlink_wire import (
    BE16,
    CTRL_ATTR_FAMILY_ID,
    CTRL_ATTR_FAMILY_NAME,
    CTRL_CMD_GETFAMILY,
    GENL_ID_CTRL,
    GENLMSGHDR,
    IPVS_CMD_ATTR_SERVICE,
    IPVS_CMD_GET_DEST,
    IPVS_CMD_GET_SERVICE,
    IPVS_GENL_NAME,
    IPVS_GENL_VERSION,
    NETLINK_GENERIC,
    NLATTR,
    NLM_F_ACK,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSGHDR,
    PROTOCOLS,
    SVC_ADDR,
    SVC_AF,
    SVC_FWMARK,
    SVC_PORT,
    SVC_PROTOCOL,
    U16,
    U32,
    FamilyNotFoundError,
    NetlinkError,
    fixed_int,
    genl_messages,
    nested_spans,
)


def _attr(atype: int, payload: bytes) -> bytes:
    raw = NLATTR.pack(4 + len(payload), atype) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _request(family_id: int, flags: int, seq: int, cmd: int, version: int, attrs: bytes) -> bytes:
    body = GENLMSGHDR.pack(cmd, version, 0) + attrs
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), family_id, flags, seq, 0) + body


def service_selector(service: VirtualService, family: int = socket.AF_INET) -> bytes:
    """The nested IPVS_CMD_ATTR_SERVICE that names ``service`` in an IPVS_CMD_GET_DEST request."""
    inner = _attr(SVC_AF, U16.pack(family))
    if service.fwmark is not None:
        inner += _attr(SVC_FWMARK, U32.pack(service.fwmark))
    else:
        proto = {v: k for k, v in PROTOCOLS.items()}.get(service.protocol or "", 0)
        packed = ipaddress.ip_address(service.address or "0.0.0.0").packed
        inner += _attr(SVC_PROTOCOL, U16.pack(proto))
        inner += _attr(SVC_ADDR, packed + b"\0" * (16 - len(packed)))
        inner += _attr(SVC_PORT, BE16.pack(service.port or 0))
    return _attr(IPVS_CMD_ATTR_SERVICE | 0x8000, inner)


class IpvsNetlink:
    """A generic netlink socket bound in the calling thread's network namespace.

    Open it after entering the namespace: a netlink socket stays in the namespace it was
    created in, whatever the thread does afterwards.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        self._sock.settimeout(5.0)
        self._sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> IpvsNetlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _exchange(self, family_id: int, flags: int, cmd: int, version: int, attrs: bytes) -> bytes:
        self._seq += 1
        self._sock.send(_request(family_id, flags, self._seq, cmd, version, attrs))
        chunks = []
        while True:
            chunk = self._sock.recv(1 << 20)
            chunks.append(chunk)
            if _ends_exchange(chunk):
                return b"".join(chunks)

    def family_id(self, name: str) -> int:
        """The id of a generic netlink family; FamilyNotFoundError when not registered."""
        attrs = _attr(CTRL_ATTR_FAMILY_NAME, name.encode() + b"\0")
        try:
            reply = self._exchange(GENL_ID_CTRL, NLM_F_REQUEST | NLM_F_ACK, CTRL_CMD_GETFAMILY, 1, attrs)
            for start, end in genl_messages(reply, GENL_ID_CTRL, 1):  # CTRL_CMD_NEWFAMILY
                for a, b in nested_spans(reply, start, end, CTRL_ATTR_FAMILY_ID, "ctrl"):
                    return fixed_int(reply, a, b, U16, "CTRL_ATTR_FAMILY_ID")
        except NetlinkError as exc:
            if exc.errno == errno.ENOENT:
                raise FamilyNotFoundError(
                    errno.ENOENT, f"generic netlink family {name!r} not found"
                ) from None
            raise
        raise FamilyNotFoundError(errno.ENOENT, f"generic netlink family {name!r}: no id in the reply")

    def read(self) -> list[VirtualService]:
        """Every virtual service in this namespace with its real servers and counters."""
        fid = self.family_id(IPVS_GENL_NAME)
        reply = self._exchange(fid, NLM_F_REQUEST | NLM_F_DUMP, IPVS_CMD_GET_SERVICE, IPVS_GENL_VERSION, b"")
        result = []
        for svc in decode_services(reply, fid):
            family = socket.AF_INET6 if svc.address and ":" in svc.address else socket.AF_INET
            dests = self._exchange(
                fid,
                NLM_F_REQUEST | NLM_F_DUMP,
                IPVS_CMD_GET_DEST,
                IPVS_GENL_VERSION,
                service_selector(svc, family),
            )
            servers = tuple(decode_real_servers(dests, fid, family))
            result.append(svc._replace(real_servers=servers))
        return result


def _ends_exchange(chunk: bytes) -> bool:
    """True when a received chunk holds NLMSG_DONE or NLMSG_ERROR (an error or the ack).

    Every request we send asks for an ack or a dump, so one of the two always ends it.
    """
    pos = 0
    while pos + NLMSGHDR.size <= len(chunk):
        length, mtype = NLMSGHDR.unpack_from(chunk, pos)[:2]
        if mtype in (NLMSG_DONE, NLMSG_ERROR) or length < NLMSGHDR.size:
            return True
        pos += (length + 3) & ~3
    return False
