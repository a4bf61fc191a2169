"""Every Protocol the reconciler and the CLI need from the world, defined by their user.

They are structural: ``SwarmTarget``, ``SwarmNodes``, ``ServiceLabelStore``,
``PrometheusSource``, ``IpvsSource``, ``PolicyStore``, ``Lease`` and ``FailoverMonitor``
satisfy them without importing this module, and tests pass in-memory fakes. Each Protocol
lists only what its user calls, so a fake stays a few lines long.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Protocol

from autoscaler.core.decision import Decision, MetricReading
from autoscaler.core.failover_tracker import NodeView, TaskView
from autoscaler.core.lease_rules import SpecLabels
from autoscaler.core.load_balancer import LoadBalancerView
from autoscaler.core.observation import MetricRequest, ServiceState, SwarmEvent
from autoscaler.core.policy import PolicySpec
from autoscaler.policy_sources.loader import LoadedPolicy, ReloadResult


class Scaler(Protocol):
    """Read one service and scale it (what the failover monitor's scaleUp needs)."""

    async def get_service(self, name: str, /) -> ServiceState | None: ...

    async def scale(
        self, state: ServiceState, replicas: int, *, labels: Mapping[str, str] | None = None
    ) -> ServiceState:
        """Set ``replicas`` (and ``labels``, in the same update) on the service version
        ``state`` was read at.

        Raises ``VersionConflictError`` when the service changed since ``state`` was read.
        """
        ...


class Target(Scaler, Protocol):
    """Where services live and get scaled (Swarm). Raises only ``autoscaler.errors`` errors."""

    async def list_services(self) -> list[ServiceState]: ...

    def events(self) -> AsyncIterator[SwarmEvent]:
        """Service, node and task events, reconnecting until cancelled."""
        ...


class NodeReader(Protocol):
    """What the failover monitor reads and writes in Swarm (``targets.swarm_nodes.SwarmNodes``)."""

    async def list_nodes(self) -> list[NodeView]: ...

    async def list_tasks(self, service_ids: Collection[str] | None = None) -> list[TaskView]: ...

    async def force_update(self, service_id: str) -> int: ...

    def events(self) -> AsyncIterator[SwarmEvent]: ...


class LoadBalancerReader(Protocol):
    """What IPVS routes to on every node, read through the agents (``sources.ipvs_agents.IpvsSource``).

    Raises ``TemporarySourceError`` when no agent answers; the failover monitor then waits
    (``loadBalancer: required``) or does not check (``auto``), and says which.
    """

    async def load_balancer_view(self) -> LoadBalancerView: ...


class LabelStore(Protocol):
    """Where the lease labels live: read them, and write them only at the version read."""

    async def read(self) -> SpecLabels: ...

    async def write(self, version: int, labels: dict[str, str]) -> None:
        """Set ``labels`` (merged into the existing ones). Raises ``VersionConflictError``."""
        ...


class MetricSource(Protocol):
    """One metric backend. One call per tick carries every request for that backend."""

    async def fetch(self, requests: Sequence[MetricRequest], /) -> Mapping[MetricRequest, MetricReading]: ...


class PolicyCatalog(Protocol):
    """The policies in force (``policy_sources.loader.PolicyStore``).

    A reload keeps the last good version of a broken file and reports the problem.
    """

    @property
    def policies(self) -> Sequence[LoadedPolicy]: ...

    def reload(self) -> ReloadResult: ...


class FailoverHooks(Protocol):
    """What the loop tells and asks the failover monitor (``reconciler.failover_monitor.FailoverMonitor``)."""

    def set_managed(self, governed: Iterable[tuple[ServiceState, PolicySpec]]) -> None: ...

    def hold_reason(self, service: str) -> str | None:
        """Why scale-down of ``service`` waits (lost tasks not yet replaced), else None."""
        ...

    def during_failover(self, service: str, decision: Decision) -> Decision: ...

    def failovers(self) -> list[dict[str, Any]]: ...


class RunningFailover(FailoverHooks, Protocol):
    """The failover monitor as the controller runs it."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


class Leadership(Protocol):
    """Whether this replica of the controller may act (``reconciler.lease.Lease``)."""

    def is_leader(self) -> bool: ...


class RunningLease(Leadership, Protocol):
    """The HA lease as the controller runs it."""

    async def run(self) -> None: ...

    async def release(self) -> None: ...


class SpecWriter(Protocol):
    """Read-modify-write of one service spec under Swarm's compare-and-swap (pause, resume).

    ``update_spec`` reads the spec, applies ``mutate`` and writes it back at the version it
    read (or refuses when that is not ``version``); ``VersionConflictError`` when another
    writer got in between, and nothing was written.
    """

    async def update_spec(
        self, service: str, version: int | None, mutate: Callable[[dict[str, Any]], None], /
    ) -> dict[str, Any]: ...
