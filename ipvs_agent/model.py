"""What one IPVS table holds, as plain values shared by the procfs and netlink readers."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, NamedTuple, TypeVar

from autoscaler.errors import AutoscalerError

_K = TypeVar("_K", bound=Hashable)


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


_memos: list[dict[Any, Any]] = []


def memo(table: dict[_K, Any]) -> dict[_K, Any]:
    """Register a module-level memo table, so forget_memos() can empty it."""
    _memos.append(table)
    return table


def forget_memos() -> None:
    """Empty every memo of the read path: the next read pays every conversion again (the
    benchmark's cold figure, a node whose backends all changed)."""
    for table in _memos:
        table.clear()


class ConversionCache(dict[_K, str]):
    """A bounded memo of one pure conversion (raw address -> text), shared across reads.

    A node's backends change slowly, so the same addresses are converted on every scrape;
    a dict hit costs a fraction of the conversion. Emptied when full, so churn cannot grow it.
    """

    def __init__(self, convert: Callable[[_K], str], limit: int = 1 << 16) -> None:
        super().__init__()
        self._convert = convert
        self._limit = limit
        memo(self)

    def __missing__(self, key: _K) -> str:
        if len(self) >= self._limit:
            self.clear()
        text = self[key] = self._convert(key)
        return text
