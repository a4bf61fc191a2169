"""In-memory stand-ins for Swarm and the metric sources (the clock is tests/timing.py's)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from autoscaler.core.decision import MetricReading
from autoscaler.core.failover_model import NodeView, TaskView
from autoscaler.core.load_balancer import LoadBalancerView
from autoscaler.core.observation import MetricRequest, ServiceState, SwarmEvent
from autoscaler.errors import TemporarySourceError, TemporaryTargetError, VersionConflictError


def service(
    name: str,
    replicas: int | None = 2,
    *,
    running: int | None = None,
    id: str | None = None,
    labels: Mapping[str, str] | None = None,
    update_state: str | None = None,
) -> ServiceState:
    return ServiceState(
        id=id or f"id-{name}",
        name=name,
        replicas=replicas,
        running=replicas or 0 if running is None else running,
        version=1,
        updated_at=0.0,
        labels=dict(labels or {}),
        update_state=update_state,
    )


@dataclass
class ScaleCall:
    service: str
    version: int
    replicas: int


class FakeTarget:
    """A swarm in a dict. ``scale`` does Swarm's compare-and-swap on ``version``."""

    def __init__(self, *services: ServiceState) -> None:
        self.services = {s.name: s for s in services}
        self.scale_calls: list[ScaleCall] = []
        self.list_calls = 0
        self.fail_list: Exception | None = None
        self.fail_scale: dict[str, Exception] = {}
        # Called before a scale is applied, to simulate someone else's change racing ours.
        self.before_scale: Callable[[ServiceState], Awaitable[None]] | None = None
        self.event_queue: asyncio.Queue[SwarmEvent] = asyncio.Queue()
        self.closed = False

    async def list_services(self) -> list[ServiceState]:
        self.list_calls += 1
        if self.fail_list is not None:
            raise self.fail_list
        return list(self.services.values())

    async def get_service(self, name: str) -> ServiceState | None:
        return self.services.get(name)

    def change(self, name: str, **fields: object) -> ServiceState:
        """An out-of-band change (a person, a deploy): bumps the version like Swarm does."""
        old = self.services[name]
        new = dataclasses.replace(old, version=old.version + 1, **fields)  # type: ignore[arg-type]
        self.services[name] = new
        return new

    async def scale(
        self, state: ServiceState, replicas: int, *, labels: Mapping[str, str] | None = None
    ) -> ServiceState:
        if self.before_scale is not None:
            await self.before_scale(state)
        if state.name in self.fail_scale:
            raise self.fail_scale[state.name]
        live = self.services.get(state.name)
        if live is None:
            raise TemporaryTargetError(f"service {state.name} not found")
        if live.version != state.version:
            raise VersionConflictError(f"update out of sequence ({state.version} != {live.version})")
        self.scale_calls.append(ScaleCall(state.name, state.version, replicas))
        new = dataclasses.replace(
            live,
            replicas=replicas,
            running=replicas,
            version=live.version + 1,
            labels={**live.labels, **(labels or {})},
            previous_replicas=live.replicas,
        )
        self.services[state.name] = new
        return new

    async def events(self) -> AsyncIterator[SwarmEvent]:
        while True:
            yield await self.event_queue.get()

    async def close(self) -> None:
        self.closed = True


class FakeSource:
    """Metric values by (service, metric); a missing key is 'no data'."""

    def __init__(self, values: Mapping[tuple[str, str], float] | None = None) -> None:
        self.values = dict(values or {})
        self.fetch_calls: list[list[MetricRequest]] = []
        self.fail: Exception | None = None

    async def fetch(self, requests: Sequence[MetricRequest]) -> dict[MetricRequest, MetricReading]:
        self.fetch_calls.append(list(requests))
        if self.fail is not None:
            raise self.fail
        found: dict[MetricRequest, MetricReading] = {}
        for r in requests:
            value = self.values.get((r.service, r.metric))
            if value is not None:
                found[r] = MetricReading(r.metric, value)
        return found


class FakeNodes:
    """Swarm's nodes and tasks for the failover monitor (``NodeReader``); force updates are counted."""

    def __init__(self, nodes: Sequence[NodeView] = (), tasks: Sequence[TaskView] = ()) -> None:
        self.nodes = list(nodes)
        self.tasks = list(tasks)
        self.forced: list[str] = []
        self.event_queue: asyncio.Queue[SwarmEvent] = asyncio.Queue()

    async def list_nodes(self) -> list[NodeView]:
        return list(self.nodes)

    async def list_tasks(self, service_ids: Collection[str] | None = None) -> list[TaskView]:
        return [t for t in self.tasks if service_ids is None or t.service_id in service_ids]

    async def force_update(self, service_id: str) -> int:
        self.forced.append(service_id)
        return len(self.forced)

    async def events(self) -> AsyncIterator[SwarmEvent]:
        while True:
            yield await self.event_queue.get()


class FakeLoadBalancer:
    """The IPVS agents as the failover monitor reads them (``LoadBalancerReader``)."""

    def __init__(self, view: LoadBalancerView | None = None) -> None:
        self.view = view or LoadBalancerView()
        self.fail: Exception | None = None
        self.hang = False  # an agent that accepts the connection and never answers
        self.reads = 0

    async def load_balancer_view(self) -> LoadBalancerView:
        self.reads += 1
        if self.hang:
            await asyncio.Event().wait()
        if self.fail is not None:
            raise self.fail
        return self.view


def refused() -> TemporarySourceError:
    return TemporarySourceError("prometheus: connection refused")


def write_policy(
    directory: Path,
    name: str,
    *,
    service: str | None = None,
    selector: Mapping[str, str] | None = None,
    min_replicas: int = 1,
    max_replicas: int = 10,
    target: float = 10.0,
    down_window: int = 300,
    metric: str = "rps",
) -> Path:
    """A policy file tracking ``metric`` at ``target`` per replica (no panic, HPA rate limits)."""
    if selector is not None:
        claim = "  selector:\n    labels:\n" + "".join(f"      {k}: {v!r}\n" for k, v in selector.items())
    else:
        claim = f"  service: {service or name}\n"
    path = directory / f"{name}.yaml"
    path.write_text(
        "apiVersion: autoscaler.swarm/v1\n"
        "kind: ScalingPolicy\n"
        f"metadata:\n  name: {name}\n"
        "spec:\n"
        f"{claim}"
        f"  minReplicas: {min_replicas}\n"
        f"  maxReplicas: {max_replicas}\n"
        "  panic:\n    enabled: false\n"
        "  behavior:\n"
        f"    scaleDown:\n      stabilizationWindowSeconds: {down_window}\n"
        "  metrics:\n"
        f"    - name: {metric}\n"
        "      prometheus:\n"
        '        query: sum(rate(requests_total{service="{{ service }}"}[1m]))\n'
        f"      target:\n        averageValue: {target}\n"
    )
    return path
