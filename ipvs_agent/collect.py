"""One node's IPVS picture: every load-balancer namespace read, mapped to services and tasks.

Used by the agent on every scrape. A failure in one namespace or one stage is recorded and
the rest is still reported; only "this kernel has no IPVS" turns the whole node unavailable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from ipvs_agent.mangle import FwmarkOwner, MarkRule, SwarmNetworkRecord, map_fwmarks
from ipvs_agent.model import VirtualService
from ipvs_agent.netns import IpvsUnavailableError

log = logging.getLogger(__name__)


class IpvsReader(Protocol):
    """Where the IPVS tables and mangle rules come from (the kernel, or fixtures in tests)."""

    def namespaces(self) -> list[str]: ...

    def read_ipvs(self, namespace: str) -> tuple[list[VirtualService], str]: ...

    def read_rules(self, namespace: str) -> list[MarkRule]: ...

    def probe(self) -> None: ...


class BackendSample(NamedTuple):
    namespace: str
    fwmark: str
    service: str
    backend: str
    task: str
    weight: int
    active: int
    inactive: int


class ServiceSample(NamedTuple):
    namespace: str
    fwmark: str  # the IPVS service key: "256" for fwmark services, "tcp:10.0.0.2:80" otherwise
    service: str  # "" when no Swarm service owns the mark on this node
    active: int
    inactive: int
    backends: int
    connections_total: int | None
    connection_rate: float | None


@dataclass
class NodeSnapshot:
    available: bool
    unavailable_reason: str = ""
    services: list[ServiceSample] = field(default_factory=list)
    backends: list[BackendSample] = field(default_factory=list)
    readers: dict[str, str] = field(default_factory=dict)  # namespace -> "netlink" | "procfs"
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # (namespace, stage, message)


def collect_node(
    reader: IpvsReader, records: Callable[[], Sequence[SwarmNetworkRecord]] | None
) -> NodeSnapshot:
    snapshot = NodeSnapshot(available=True)
    namespaces = reader.namespaces()
    if not namespaces:
        # No Swarm load balancer here yet; still say whether IPVS could work on this node.
        try:
            reader.probe()
        except IpvsUnavailableError as exc:
            return NodeSnapshot(available=False, unavailable_reason=exc.strerror or str(exc))
        except OSError as exc:
            snapshot.errors.append(("", "probe", str(exc)))
        return snapshot
    networks: dict[str, SwarmNetworkRecord] = {}
    if records is not None:
        try:
            networks = {net.namespace_name: net for net in records()}
        except Exception as exc:  # Docker down or unreadable: map by nothing, keep counting
            snapshot.errors.append(("", "swarm-record", f"{type(exc).__name__}: {exc}"))
    unavailable = 0
    for ns in namespaces:
        try:
            services, how = reader.read_ipvs(ns)
        except IpvsUnavailableError as exc:
            unavailable += 1
            snapshot.unavailable_reason = exc.strerror or str(exc)
            continue
        except Exception as exc:  # one namespace's failure must not hide the others
            snapshot.errors.append((ns, "ipvs", f"{type(exc).__name__}: {exc}"))
            continue
        snapshot.readers[ns] = how
        try:
            rules = reader.read_rules(ns)
        except Exception as exc:
            snapshot.errors.append((ns, "mangle", f"{type(exc).__name__}: {exc}"))
            rules = []
        net = networks.get(ns)
        owners = map_fwmarks(rules, net.services if net else ())
        _add_samples(snapshot, ns, services, owners)
    # "No IPVS" is a fact about the kernel, not one namespace: when no namespace could be read
    # and one said so, the node has none, even if another failed otherwise (a stale lb_ file
    # left by a removed network gives EINVAL from setns, seen on the lab).
    if unavailable and not snapshot.readers:
        snapshot.available = False
    return snapshot


def _add_samples(
    snapshot: NodeSnapshot, ns: str, services: list[VirtualService], owners: Mapping[int, FwmarkOwner]
) -> None:
    for svc in services:
        owner = owners.get(svc.fwmark) if svc.fwmark is not None else None
        name = owner.service if owner else ""
        tasks = owner.tasks if owner else {}
        key = str(svc.fwmark) if svc.fwmark is not None else svc.key
        for rs in svc.real_servers:
            snapshot.backends.append(
                BackendSample(
                    namespace=ns,
                    fwmark=key,
                    service=name,
                    backend=rs.address,
                    task=tasks.get(rs.address, ""),
                    weight=rs.weight,
                    active=rs.active_connections,
                    inactive=rs.inactive_connections,
                )
            )
        snapshot.services.append(
            ServiceSample(
                namespace=ns,
                fwmark=key,
                service=name,
                active=svc.active_connections,
                inactive=svc.inactive_connections,
                backends=len(svc.real_servers),
                connections_total=svc.connections_total,
                connection_rate=svc.connection_rate,
            )
        )
