"""What one IPVS table holds, as plain values shared by the procfs and netlink readers."""

from __future__ import annotations

from typing import NamedTuple

from autoscaler.errors import AutoscalerError


class IpvsFormatError(AutoscalerError, ValueError):
    """Kernel output that does not have the shape ip_vs_ctl.c writes.

    The message says where (line or byte offset) and what was expected, so a report from a
    node whose kernel prints something new can be acted on.
    """


class RealServer(NamedTuple):
    """One backend (a task's address on the network) of a virtual service.

    NamedTuple rather than a frozen dataclass: 10,000 of them are built per read, and a
    frozen dataclass costs ~10x more to construct.
    """

    address: str
    port: int
    forward: str
    weight: int
    active_connections: int
    inactive_connections: int
    persistent_connections: int | None = None
    connections_total: int | None = None


class VirtualService(NamedTuple):
    """One IPVS virtual service: a fwmark service (Swarm's kind) or protocol/address/port.

    ``connections_total`` (cumulative scheduled connections) and ``connection_rate`` (the
    kernel's per-second estimate) come from netlink only; /proc/net/ip_vs does not print them.
    """

    fwmark: int | None
    protocol: str | None
    address: str | None
    port: int | None
    scheduler: str
    real_servers: tuple[RealServer, ...] = ()
    connections_total: int | None = None
    connection_rate: float | None = None

    @property
    def key(self) -> str:
        """A label-friendly identity: ``fwm:256`` or ``tcp:10.0.0.2:80``."""
        if self.fwmark is not None:
            return f"fwm:{self.fwmark}"
        return f"{(self.protocol or '?').lower()}:{self.address}:{self.port}"

    @property
    def active_connections(self) -> int:
        return sum(rs.active_connections for rs in self.real_servers)

    @property
    def inactive_connections(self) -> int:
        return sum(rs.inactive_connections for rs in self.real_servers)
