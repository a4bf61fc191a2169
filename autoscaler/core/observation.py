"""What the reconciler observes of the world, as plain values.

Targets (Swarm) and sources (Prometheus, IPVS) return these; the reconciler's Protocols
(``autoscaler.reconciler.ports``) are written in terms of them. They live in the pure
core so every layer can import them without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ServiceState:
    """One Swarm service as the target sees it at one moment.

    ``replicas`` is the spec's ``Mode.Replicated.Replicas`` (None for a global-mode
    service, which is never scaled). ``running`` counts tasks with desired state running
    and state running. ``version`` is the spec's ``Version.Index`` for compare-and-swap.
    ``updated_at`` is the spec's ``UpdatedAt`` as Unix seconds: the last change,
    whoever made it. ``update_state`` is ``UpdateStatus.State`` (None when no update
    ever ran); a service whose update is in progress is held. ``load_balanced``: Swarm gave
    it virtual IPs (``Endpoint.VirtualIPs``: VIP endpoint mode on a network, or ports
    published through the ingress), so IPVS routes to its tasks; dnsrr services have none.
    ``previous_replicas`` is ``PreviousSpec``'s replica count (None: no previous spec, or
    not replicated), what the last change started from.
    """

    id: str
    name: str
    replicas: int | None
    running: int
    version: int
    updated_at: float
    labels: dict[str, str] = field(default_factory=dict)
    update_state: str | None = None
    load_balanced: bool = False
    previous_replicas: int | None = None

    @property
    def is_global(self) -> bool:
        return self.replicas is None

    @property
    def updating(self) -> bool:
        return self.update_state in ("updating", "rollback_started")


@dataclass(frozen=True, slots=True)
class MetricRequest:
    """One metric to fetch for one service. Hashable so sources can batch and dedupe.

    ``kind`` is "prometheus" or "ipvs". For prometheus, ``query`` is the policy's query
    (still templated with ``{{ service }}``) and ``series_label`` is set for grouped
    queries. For ipvs, ``query`` is the counter name (activeConnections, connectionRate).
    """

    service: str
    metric: str
    kind: str
    query: str
    series_label: str | None = None


@dataclass(frozen=True, slots=True)
class SwarmEvent:
    """One change in the swarm (``targets.swarm_events`` reads them from Docker).

    ``kind`` is "service", "node" or "task"; ``action`` Docker's verb (create, update,
    remove; start, die...). ``id``/``name`` are the service's (also for task events) or the
    node's. ``at`` is Unix seconds.
    """

    kind: str
    action: str
    id: str
    name: str | None
    at: float
