"""The Protocols the reconcile loop needs from the world, defined by the loop (their user).

They are structural: ``SwarmTarget``, ``PrometheusSource``, ``IpvsSource``, ``PolicyStore``
and ``Engine`` satisfy them without importing this module, and tests pass in-memory
fakes. Each Protocol lists only what the loop calls, so a fake stays a few lines long.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, Protocol

from autoscaler.core.decision import Decision, MetricReading
from autoscaler.core.observation import MetricRequest, ServiceState
from autoscaler.core.policy import PolicySpec, ScalingPolicy


class Target(Protocol):
    """Where services live and get scaled (Swarm). Raises only ``autoscaler.errors`` errors."""

    async def list_services(self) -> list[ServiceState]: ...

    async def get_service(self, name: str, /) -> ServiceState | None: ...

    async def scale(self, state: ServiceState, replicas: int) -> ServiceState:
        """Set ``replicas`` on the service version ``state`` was read at.

        Raises ``VersionConflictError`` when the service changed since ``state`` was read.
        """
        ...

    def events(self) -> AsyncIterator[object]:
        """Service, node and task events; each has ``kind`` and, when known, the service it touches."""
        ...


class MetricSource(Protocol):
    """One metric backend. One call per tick carries every request for that backend."""

    async def fetch(self, requests: Sequence[MetricRequest], /) -> Mapping[MetricRequest, MetricReading]: ...


class LoadedPolicyLike(Protocol):
    """A policy and where it came from (``policy.loader.LoadedPolicy``)."""

    @property
    def policy(self) -> ScalingPolicy: ...


class ReloadResultLike(Protocol):
    """What changed in a reload (policy names) and what is wrong (``policy.loader.ReloadResult``)."""

    @property
    def added(self) -> Sequence[str]: ...

    @property
    def changed(self) -> Sequence[str]: ...

    @property
    def removed(self) -> Sequence[str]: ...

    @property
    def problems(self) -> Sequence[object]: ...


class PolicyCatalog(Protocol):
    """The policies in force (``policy.loader.PolicyStore``).

    A reload keeps the last good version of a broken file and reports the problem.
    """

    @property
    def policies(self) -> Sequence[LoadedPolicyLike]: ...

    def reload(self) -> ReloadResultLike: ...


class DecisionEngine(Protocol):
    """The pure decision engine for one policy applied to one service (``core.engine.Engine``)."""

    def decide(
        self,
        *,
        now: float,
        current: int,
        running: int,
        readings: Mapping[str, MetricReading],
        changed_at: float | None = None,
        hold_scale_down: str | None = None,
    ) -> Decision: ...

    def record_scale(self, *, at: float, from_replicas: int, to_replicas: int) -> None: ...

    def update_spec(self, spec: PolicySpec) -> None: ...


class EngineFactory(Protocol):
    def __call__(self, spec: PolicySpec, *, now: float, current: int) -> DecisionEngine: ...


class FailoverHooks(Protocol):
    """What the loop tells and asks the failover monitor (``reconciler.failover.FailoverMonitor``)."""

    def set_managed(self, governed: Iterable[tuple[ServiceState, PolicySpec]]) -> None: ...

    def hold_reason(self, service: str) -> str | None:
        """Why scale-down of ``service`` waits (lost tasks not yet replaced), else None."""
        ...

    def during_failover(self, service: str, decision: Decision) -> Decision: ...

    def failovers(self) -> list[dict[str, Any]]: ...


class Leadership(Protocol):
    """Whether this replica of the controller may act (``reconciler.lease.Lease``)."""

    def is_leader(self) -> bool: ...
