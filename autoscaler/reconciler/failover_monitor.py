"""Failover monitor: feeds Swarm's nodes and tasks to the failover tracker and acts on its events.

It resyncs on node/service/task events and every ``interval`` seconds, and every
``fast_interval`` while a lost task is still waiting: task state changes on worker nodes
produce no event at the manager, and the goal is to confirm a replacement within ~2 s of
Swarm reporting it running. On a timeout it performs the policy's ``onTimeout`` (alert:
report only; forceUpdate: ``docker service update --force``; scaleUp: +scaleUpBy replicas
within maxReplicas) and records the outcome in the failover.

With a ``load_balancer`` reader (the IPVS agents), each resync during a failover also reads
what IPVS routes to, right after the tasks, and passes it to the tracker: a replacement is
then confirmed once it is an IPVS backend on the nodes (the policy's ``loadBalancer``). That
read has its own ``load_balancer_timeout``: the failed node's agent is unreachable too, and a
slow read must not stall the Swarm reads.

The reconcile loop uses ``set_managed`` (each pass), ``hold_reason`` (pass it to
``Engine.decide(hold_scale_down=...)``), ``during_failover`` (to annotate a scale-up) and
``failovers()`` (the ``failovers`` section of /decisions).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from autoscaler.core.decision import Decision, Direction
from autoscaler.core.failover_report import failover_summary, failovers_json
from autoscaler.core.failover_tracker import (
    ConfirmationTimedOut,
    FailoverEvent,
    FailoverOpened,
    FailoverSettled,
    FailoverTracker,
    LoadBalancerView,
    ManagedService,
    ReplacementConfirmed,
)
from autoscaler.core.observation import ServiceState
from autoscaler.core.policy import OnTimeout, PolicySpec
from autoscaler.errors import AutoscalerError, VersionConflictError
from autoscaler.reconciler.ports import LoadBalancerReader, NodeReader, Scaler

log = logging.getLogger("autoscaler.failover")

# Swarm's replacement times measured on the lab run 3-12 s; a slow registry pull can take minutes.
_REPLACEMENT_BUCKETS = (1.0, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0, 300.0)
_LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


def _once_more_after_a_conflict() -> AsyncRetrying:
    """One more attempt when the service changed between read and write (each attempt re-reads)."""
    return AsyncRetrying(
        stop=stop_after_attempt(2), retry=retry_if_exception_type(VersionConflictError), reraise=True
    )


class FailoverMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        ns = "autoscaler"
        self.node_down = Counter(
            "node_down_events",
            "Nodes seen going down, unknown, disconnected or drained, by kind.",
            ["kind"],
            namespace=ns,
            registry=registry,
        )
        self.replacement = Histogram(
            "failover_replacement_seconds",
            "From Swarm marking the node down to our confirming the replacement task running.",
            namespace=ns,
            registry=registry,
            buckets=_REPLACEMENT_BUCKETS,
        )
        self.confirm_lag = Histogram(
            "failover_confirm_lag_seconds",
            "From Swarm's running timestamp of a replacement to our confirmation of it.",
            namespace=ns,
            registry=registry,
            buckets=_LAG_BUCKETS,
        )
        self.unconfirmed = Gauge(
            "failover_unconfirmed_replacements",
            "Lost tasks not yet running elsewhere, per service.",
            ["service"],
            namespace=ns,
            registry=registry,
        )
        self.timeouts = Counter(
            "failover_timeouts",
            "onTimeout firings by service and action.",
            ["service", "action"],
            namespace=ns,
            registry=registry,
        )
        self.open = Gauge("failovers_open", "Failed nodes not back yet.", namespace=ns, registry=registry)
        self.resync_errors = Counter(
            "failover_resync_errors", "Failed node/task reads.", namespace=ns, registry=registry
        )
        self.load_balancer_errors = Counter(
            "failover_load_balancer_read_errors",
            "Failed reads of the IPVS agents during a failover (no agent answered, or timed out).",
            namespace=ns,
            registry=registry,
        )


class FailoverMonitor:
    def __init__(
        self,
        *,
        nodes: NodeReader,
        target: Scaler,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        interval: float = 5.0,
        fast_interval: float = 0.5,
        may_act: Callable[[], bool] | None = None,
        load_balancer: LoadBalancerReader | None = None,
        load_balancer_timeout: float = 2.0,
    ) -> None:
        """``may_act`` (e.g. ``Lease.is_leader``) gates onTimeout actions when several replicas run.

        ``load_balancer``: the IPVS agents, for ``nodeFailure.loadBalancer`` (None: not configured).
        """
        if interval <= 0 or fast_interval <= 0 or load_balancer_timeout <= 0:
            raise ValueError(
                f"intervals and load_balancer_timeout must be > 0 seconds "
                f"(got {interval}, {fast_interval}, {load_balancer_timeout})"
            )
        self.load_balancer = load_balancer
        self.load_balancer_timeout = load_balancer_timeout
        self.last_view: LoadBalancerView | None = None
        self.nodes = nodes
        self.target = target
        self.metrics = FailoverMetrics(registry)
        self.clock = clock
        self.sleep = sleep
        self.interval = interval
        self.fast_interval = min(fast_interval, interval)
        self.may_act = may_act
        self.tracker = FailoverTracker()
        self.last_error: str | None = None
        self._managed: dict[str, ManagedService] | None = None  # None until the loop says
        self._specs: dict[str, PolicySpec] = {}  # by service id
        self._ids: dict[str, str] = {}  # service name -> id
        self._exported: set[str] = set()  # service labels on the unconfirmed gauge
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    # -- what the loop calls -------------------------------------------------------------------

    def set_managed(self, governed: Iterable[tuple[ServiceState, PolicySpec]]) -> None:
        """The services policies govern now, with their policy (global services are skipped)."""
        pairs = [(s, p) for s, p in governed if not s.is_global]
        self._managed = {
            s.id: ManagedService(s.id, s.name, p.node_failure, load_balanced=s.load_balanced)
            for s, p in pairs
        }
        self._specs = {s.id: p for s, p in pairs}
        self._ids = {s.name: s.id for s, _ in pairs}

    def hold_reason(self, service: str) -> str | None:
        """Why scale-down of ``service`` (a name) waits, while its lost tasks are not all back."""
        service_id = self._ids.get(service)
        return None if service_id is None else self.tracker.hold_reason(service_id, self.clock())

    def during_failover(self, service: str, decision: Decision) -> Decision:
        """``decision`` with its reason saying so when it scales up during a failover."""
        hold = self.hold_reason(service)
        if hold is None or decision.direction is not Direction.UP:
            return decision
        return replace(decision, reason=f"{decision.reason}; scale-up during {hold}")

    def failovers(self) -> list[dict[str, Any]]:
        """The ``failovers`` section of /decisions."""
        return failovers_json(self.tracker, self.clock())

    # -- observing ---------------------------------------------------------------------------------

    async def resync(self) -> list[FailoverEvent]:
        """Read nodes and the managed services' tasks once, advance the tracker and act.

        Does nothing before the first ``set_managed``: a failover opened without knowing the
        governed services would record no lost tasks, and it is only opened once.
        """
        if self._managed is None:
            return []
        managed = dict(self._managed)
        try:
            nodes, tasks = await asyncio.gather(self.nodes.list_nodes(), self.nodes.list_tasks(list(managed)))
        except AutoscalerError as exc:
            self.metrics.resync_errors.inc()
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("failover resync failed: %s", self.last_error, extra={"event": "failover_error"})
            return []
        self.last_error = None
        failing = any(n.failure is not None for n in nodes) or bool(self.tracker.open_failovers)
        view = await self._read_load_balancer() if failing else self.last_view
        events = self.tracker.observe(self.clock(), nodes, tasks, managed, view)
        for event in events:
            await self._handle(event)
        self._export()
        return events

    async def _read_load_balancer(self) -> LoadBalancerView | None:
        """What IPVS routes to now (None: no agents configured); a failed read is a view saying why."""
        if self.load_balancer is None:
            return None
        try:
            view = await asyncio.wait_for(self.load_balancer.load_balancer_view(), self.load_balancer_timeout)
        except TimeoutError:
            view = LoadBalancerView.unreadable(f"no answer within {self.load_balancer_timeout:g}s")
        except AutoscalerError as exc:
            view = LoadBalancerView.unreadable(f"{type(exc).__name__}: {exc}")
        if view.error is not None:
            self.metrics.load_balancer_errors.inc()
            if self.last_view is None or self.last_view.error != view.error:
                log.warning(
                    "failover: IPVS agents not read: %s", view.error, extra={"event": "failover_error"}
                )
        self.last_view = view
        return view

    def load_balancer_state(self) -> str:
        """What the monitor knows of IPVS, for the failover log."""
        view = self.last_view
        if self.load_balancer is None:
            return "no IPVS agents configured"
        if view is None:
            return "IPVS agents not read yet"
        if view.error is not None:
            return f"IPVS agents not read: {view.error}"
        return f"IPVS read on {len(view.routes)} node(s)" + (
            f", {len(view.failures)} agent(s) silent" if view.failures else ""
        )

    async def run(self) -> None:
        """Resync on events and on a timer until ``stop()``."""
        watcher = asyncio.create_task(self._watch(), name="failover-events")
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                try:
                    await self.resync()
                except Exception:  # a bug here must not end failover tracking; the next pass retries
                    log.exception("failover resync crashed", extra={"event": "failover_error"})
                waiting = any(f.waiting for f in self.tracker.open_failovers)
                await self._wait(self.fast_interval if waiting else self.interval)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def _wait(self, delay: float) -> None:
        timer = asyncio.ensure_future(self.sleep(delay))
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({timer, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (timer, woken):
                waiter.cancel()
            await asyncio.gather(timer, woken, return_exceptions=True)

    async def _watch(self) -> None:
        while not self._stopping.is_set():
            stream = self.nodes.events()
            try:
                async for event in stream:
                    if event.kind in ("node", "service", "task"):
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the timer keeps resyncing; the stream reconnects itself
                log.warning("failover event stream failed: %s: %s", type(exc).__name__, exc)
                await self.sleep(self.interval)
            finally:
                # Close the HTTP stream now, not when the generator is collected after the client is gone.
                close = getattr(stream, "aclose", None)  # an async generator has it, a plain iterator not
                if close is not None:
                    await close()

    # -- acting ------------------------------------------------------------------------------------

    async def _handle(self, event: FailoverEvent) -> None:
        failover = event.failover
        if isinstance(event, FailoverOpened):
            self.metrics.node_down.labels(failover.kind).inc()
            services = sorted({t.service_name for t in failover.lost})
            checks = sorted(
                {f"{m.name}={m.node_failure.load_balancer.value}" for m in (self._managed or {}).values()}
            )
            log.warning(
                "node %s is %s: %d task(s) of %s to be replaced (%s; loadBalancer %s)",
                failover.hostname,
                failover.kind,
                len(failover.lost),
                ", ".join(services) or "no managed service",
                self.load_balancer_state(),
                ", ".join(checks) or "-",
                extra={"event": "failover_opened", "node": failover.hostname},
            )
        elif isinstance(event, ReplacementConfirmed):
            task = event.task
            if task.confirmed_at is not None:
                self.metrics.replacement.observe(max(0.0, task.confirmed_at - failover.failed_at))
                if task.running_at is not None:
                    self.metrics.confirm_lag.observe(max(0.0, task.confirmed_at - task.running_at))
        elif isinstance(event, ConfirmationTimedOut):
            record = event.record
            record.outcome = await self._on_timeout(event)
            self.metrics.timeouts.labels(record.service_name, record.action.value).inc()
            log.warning(
                "failover #%d: %d task(s) of %s not running elsewhere after %ds (%s); onTimeout %s: %s",
                failover.number,
                record.waiting,
                record.service_name,
                event.service.node_failure.confirm_within_seconds,
                "; ".join(record.reasons) or "no reason from Swarm",
                record.action.value,
                record.outcome,
                extra={"event": "failover_timeout", "service": record.service_name},
            )
        elif isinstance(event, FailoverSettled):
            log.info(failover_summary(failover), extra={"event": "failover", "node": failover.hostname})

    async def _on_timeout(self, event: ConfirmationTimedOut) -> str:
        service = event.service
        action = event.record.action
        if action is not OnTimeout.ALERT and self.may_act is not None and not self.may_act():
            return f"not performed ({action.value}): dry-run, or this replica does not hold the lease"
        try:
            if action is OnTimeout.FORCE_UPDATE:
                return await self._force_update(service)
            if action is OnTimeout.SCALE_UP:
                return await self._scale_up(service)
        except AutoscalerError as exc:
            return f"failed: {type(exc).__name__}: {exc}"
        return "reported (alert only)"

    async def _force_update(self, service: ManagedService) -> str:
        async for attempt in _once_more_after_a_conflict():
            with attempt:
                counter = await self.nodes.force_update(service.id)  # it re-reads the spec
        return f"forced an update of every task (ForceUpdate={counter})"

    async def _scale_up(self, service: ManagedService) -> str:
        spec = self._specs.get(service.id)
        if spec is None:
            return "not scaled: no policy governs the service any more"
        async for attempt in _once_more_after_a_conflict():
            with attempt:
                outcome = await self._scale_up_once(service, spec)
        return outcome

    async def _scale_up_once(self, service: ManagedService, spec: PolicySpec) -> str:
        state = await self.target.get_service(service.name)
        if state is None or state.replicas is None:
            return "not scaled: the service is gone or not replicated"
        wanted = min(spec.max_replicas, state.replicas + service.node_failure.scale_up_by)
        if wanted <= state.replicas:
            return f"not scaled: already at maxReplicas ({spec.max_replicas})"
        await self.target.scale(state, wanted)
        return f"scaled {state.replicas} -> {wanted} replicas"

    def _export(self) -> None:
        self.metrics.open.set(len(self.tracker.open_failovers))
        counts = self.tracker.unconfirmed()
        names = {m.name for m in (self._managed or {}).values()}
        for gone in self._exported - names:
            self.metrics.unconfirmed.remove(gone)
        for name in names:
            self.metrics.unconfirmed.labels(name).set(counts.get(name, 0))
        self._exported = names
