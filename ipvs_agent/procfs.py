"""Parse ``/proc/net/ip_vs`` as net/netfilter/ipvs/ip_vs_ctl.c prints them.

ip_vs_info_seq_show writes three header lines, then per service either
``"%s  %08X:%04X %s %s"`` (protocol, IPv4 address and port in hex, scheduler, ``ops `` flag),
``"%s  [%pI6]:%04X %s "`` (IPv6) or ``"FWM  %08X %s %s"`` (fwmark, Swarm's kind), optionally
followed by ``"persistent %d %08X"``, and per real server
``"  -> %08X:%04X      %-7s %-6d %-10d %-10d"`` (address, port, forward method, weight,
ActiveConn, InActConn). This file is the fallback when the IPVS netlink family cannot be used:
it has no cumulative connection counts or rates per service.
"""

from __future__ import annotations

import ipaddress

from ipvs_agent.model import IpvsFormatError, RealServer, VirtualService

_VERSION_PREFIX = "IP Virtual Server version"
_HEADER_PREFIXES = ("Prot LocalAddress:Port", "  -> RemoteAddress:Port")
_FORWARD_METHODS = frozenset({"Masq", "Local", "Tunnel", "Route"})


def _hex_int(text: str, what: str, lineno: int, bits: int) -> int:
    try:
        value = int(text, 16)
    except ValueError:
        raise IpvsFormatError(f"/proc/net/ip_vs line {lineno}: {what} {text!r} is not hexadecimal") from None
    if value < 0 or value >= 1 << bits:
        raise IpvsFormatError(f"/proc/net/ip_vs line {lineno}: {what} {text!r} does not fit {bits} bits")
    return value


def _address_port(text: str, lineno: int) -> tuple[str, int]:
    """``0A000002:0050`` or ``[2001:db8::1]:0050`` -> (dotted/colon address, port)."""
    host, sep, port_hex = text.rpartition(":")
    if not sep or not host:
        raise IpvsFormatError(f"/proc/net/ip_vs line {lineno}: expected ADDRESS:PORT in hex, got {text!r}")
    port = _hex_int(port_hex, "port", lineno, 16)
    if host.startswith("[") and host.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(host[1:-1])), port
        except ValueError:
            raise IpvsFormatError(f"/proc/net/ip_vs line {lineno}: bad IPv6 address {host!r}") from None
    if len(host) != 8:
        raise IpvsFormatError(f"/proc/net/ip_vs line {lineno}: IPv4 address {host!r} is not 8 hex digits")
    v = _hex_int(host, "address", lineno, 32)
    return f"{v >> 24}.{(v >> 16) & 255}.{(v >> 8) & 255}.{v & 255}", port


def _real_server(fields: list[str], lineno: int) -> RealServer:
    # fields: ["->", ADDR:PORT, forward, weight, active, inactive]; checks in order so the
    # error names the first problem.
    if len(fields) != 6:
        raise IpvsFormatError(
            f"/proc/net/ip_vs line {lineno}: a real server line has 6 fields "
            f"(-> ADDR:PORT Forward Weight ActiveConn InActConn), got {len(fields)}"
        )
    if fields[2] not in _FORWARD_METHODS:
        raise IpvsFormatError(f"/proc/net/ip_vs line {lineno}: unknown forward method {fields[2]!r}")
    try:
        weight, active, inactive = int(fields[3]), int(fields[4]), int(fields[5])
    except ValueError:
        raise IpvsFormatError(
            f"/proc/net/ip_vs line {lineno}: Weight, ActiveConn and InActConn must be numbers, "
            f"got {' '.join(fields[3:])!r}"
        ) from None
    if active < 0 or inactive < 0:
        raise IpvsFormatError(f"/proc/net/ip_vs line {lineno}: negative connection count")
    address, port = _address_port(fields[1], lineno)
    return RealServer(address, port, fields[2], weight, active, inactive)


def _service_head(fields: list[str], lineno: int) -> VirtualService:
    if len(fields) < 3:
        raise IpvsFormatError(
            f"/proc/net/ip_vs line {lineno}: a service line is 'PROT ADDR:PORT SCHED [flags]' "
            f"or 'FWM MARK SCHED [flags]', got {' '.join(fields)!r}"
        )
    prot, where, scheduler = fields[0], fields[1], fields[2]
    if not prot.replace("_", "").isalnum():
        raise IpvsFormatError(f"/proc/net/ip_vs line {lineno}: unknown protocol {prot!r}")
    if prot == "FWM":
        return VirtualService(
            fwmark=_hex_int(where, "fwmark", lineno, 32),
            protocol=None,
            address=None,
            port=None,
            scheduler=scheduler,
        )
    address, port = _address_port(where, lineno)
    return VirtualService(fwmark=None, protocol=prot, address=address, port=port, scheduler=scheduler)


def parse_ip_vs(text: str) -> list[VirtualService]:
    """Every virtual service in one namespace's /proc/net/ip_vs, with its real servers.

    Raises IpvsFormatError naming the line for anything ip_vs_ctl.c would not print.
    """
    lines = text.split("\n")
    if not lines or not lines[0].startswith(_VERSION_PREFIX):
        raise IpvsFormatError(
            f"/proc/net/ip_vs line 1: expected {_VERSION_PREFIX!r}, got {lines[0][:60]!r}; "
            "is this really an IPVS table?"
        )
    services: list[VirtualService] = []
    head: VirtualService | None = None
    servers: list[RealServer] = []
    for lineno, line in enumerate(lines[1:], start=2):
        if line.startswith(_HEADER_PREFIXES):
            continue
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "->":
            if head is None:
                raise IpvsFormatError(f"/proc/net/ip_vs line {lineno}: real server line before any service")
            servers.append(_real_server(fields, lineno))
            continue
        if line[0].isspace():
            raise IpvsFormatError(f"/proc/net/ip_vs line {lineno}: unexpected indented line {line[:60]!r}")
        if head is not None:
            services.append(_with_servers(head, servers))
        head, servers = _service_head(fields, lineno), []
    if head is not None:
        services.append(_with_servers(head, servers))
    return services


def _with_servers(head: VirtualService, servers: list[RealServer]) -> VirtualService:
    return VirtualService(
        fwmark=head.fwmark,
        protocol=head.protocol,
        address=head.address,
        port=head.port,
        scheduler=head.scheduler,
        real_servers=tuple(servers),
    )
