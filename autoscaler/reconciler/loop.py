"""The reconcile loop: level-triggered, one pass per tick, event-nudged, failure-isolated.

Each pass lists services once, pairs them with policies, fetches every metric with one
call per source, then decides and scales each service on its own: a service that raises
is recorded as failed and the others carry on. Clock and sleep are injected so tests
drive time by hand and never sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autoscaler.core.decision import MetricReading
from autoscaler.core.observation import MetricRequest
from autoscaler.observability.metrics import ControllerMetrics, ServiceSample
from autoscaler.policy_sources.label_controls import read_pause
from autoscaler.policy_sources.labels import LabelProblem
from autoscaler.reconciler.events import touched_services
from autoscaler.reconciler.label_policies import LabelPolicies
from autoscaler.reconciler.matching import Assignment, idle_policies, match_all, metric_requests
from autoscaler.reconciler.policy_watcher import PolicyWatcher
from autoscaler.reconciler.ports import (
    FailoverHooks,
    Leadership,
    MetricSource,
    PolicyCatalog,
    Target,
)
from autoscaler.reconciler.records import Outcome, ServiceRecord, bounded
from autoscaler.reconciler.service_pass import EngineSlot, ScaleOrder, ServiceReconciler

log = logging.getLogger("autoscaler.reconciler")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class PassResult:
    """One pass: which services were looked at, scaled and failed (``--once`` exits on ``failed``)."""

    services: tuple[str, ...] = ()
    scaled: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    target_error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed and self.target_error is None


@dataclass
class LoopStatus:
    """What health and readiness checks read."""

    last_pass_at: float | None = None
    passes: int = 0
    target_reachable: bool = False
    target_error: str | None = None
    records: dict[str, ServiceRecord] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    idle_policies: list[str] = field(default_factory=list)
    shadowed: list[str] = field(default_factory=list)  # claims outranked by a more specific one


def _pause_problems(assignments: Sequence[Assignment]) -> list[LabelProblem]:
    """Unreadable pause labels of governed services (those services are held, see ``Pause``)."""
    problems = []
    for a in assignments:
        for label, message in read_pause(a.service.labels).problems:
            problems.append(LabelProblem(a.service.name, label, message))
    return problems


class Reconciler:
    def __init__(
        self,
        *,
        target: Target,
        sources: Mapping[str, MetricSource],
        policies: PolicyCatalog,
        metrics: ControllerMetrics,
        interval: float = 5.0,
        dry_run: bool = False,
        debounce: float = 0.5,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        failover: FailoverHooks | None = None,
        leadership: Leadership | None = None,
        service_timeout: float = 30.0,
        labels: bool = True,
        label_selector: Mapping[str, str] | None = None,
        freeze_after_first_pass: bool = False,
    ) -> None:
        self.target = target
        self.sources = dict(sources)
        self.metrics = metrics
        self.interval = interval
        self.dry_run = dry_run
        self.debounce = debounce
        self.service_timeout = service_timeout
        self.clock = clock
        self.sleep = sleep
        self.policies = PolicyWatcher(policies, metrics)
        self.labels = LabelPolicies(metrics, enabled=labels, selector=label_selector)
        self.status = LoopStatus()
        self.failover = failover
        self.leadership = leadership
        self._engines: dict[tuple[str, str], EngineSlot] = {}
        self._services = ServiceReconciler(
            target=target,
            metrics=metrics,
            engines=self._engines,
            clock=clock,
            dry_run=dry_run,
            failover=failover,
            leadership=leadership,
            service_timeout=service_timeout,
        )
        metrics.watch_services(self._service_samples)
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._pending: set[str] | None = set()  # None: every service is pending
        self._reload_requested = False
        # Process-wide, so asked for by the program (``run``), never by tests or a library user.
        self._freeze_pending = freeze_after_first_pass

    # -- control from outside (signals, events, HTTP) --------------------------------------

    def stop(self) -> None:
        """Stop taking new work; the pass in progress finishes its in-flight scale calls."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def request_reload(self) -> None:
        """SIGHUP: re-read changed policy files now (after the debounce), not at the next tick."""
        self._reload_requested = True
        self.nudge(None)

    def nudge(self, services: frozenset[str] | None) -> None:
        """Reconcile ``services`` (None: all) soon, after the debounce delay."""
        if services is None or self._pending is None:
            self._pending = None
        else:
            self._pending |= services
        self._wake.set()

    def _service_samples(self) -> list[ServiceSample]:
        """The per-service gauges, read at each scrape: each record with a replica count."""
        samples = (record.sample() for record in self.status.records.values())
        return [sample for sample in samples if sample is not None]

    # -- one pass ----------------------------------------------------------------------------

    async def run_once(self) -> PassResult:
        with self._first_pass_heap():
            self.policies.reload()
            return await self.reconcile()

    @contextlib.contextmanager
    def _first_pass_heap(self) -> Iterator[None]:
        """Around the first policy load and pass, if asked: no collections, then freeze what stays.

        That load and pass make what lives as long as the controller: the policies, an engine
        per service, the clients. Collecting while they pile up walks the growing heap again
        and again to free next to nothing; afterwards every full collection would walk it
        again every pass or two (at 10,000 services a third of each pass; issue 15). So
        ``gc.freeze()`` at the end leaves all of it out of later collections. No collection
        before freezing: at 10,000 services it walked 651,000 objects in 0.42 s (a tenth of
        the first pass) to find 64 in garbage cycles, which freezing now keeps (a few KB,
        once). Acyclic garbage is freed as usual, by reference counting.
        """
        if not self._freeze_pending:
            yield
            return
        gc.disable()
        try:
            yield
        finally:
            gc.enable()
            if self.status.records:  # it governed services (not a pass that found Docker down)
                gc.freeze()
                self._freeze_pending = False

    async def reconcile(self, only: frozenset[str] | None = None) -> PassResult:
        """One pass over every governed service (or only those named in ``only``)."""
        started = time.perf_counter()
        try:
            return await self._reconcile(only)
        finally:
            self.metrics.reconcile_duration.observe(time.perf_counter() - started)
            self.status.last_pass_at = self.clock()
            self.status.passes += 1
            self.metrics.last_tick.set(self.status.last_pass_at)

    async def _reconcile(self, only: frozenset[str] | None) -> PassResult:
        try:
            services = await self.target.list_services()
        except Exception as exc:
            self.metrics.target_errors.labels("list").inc()
            self.status.target_reachable = False
            self.status.target_error = bounded(f"{type(exc).__name__}: {exc}")
            log.error("cannot list services: %s", self.status.target_error, extra={"event": "target_error"})
            return PassResult(target_error=self.status.target_error)
        self.status.target_reachable = True
        self.status.target_error = None

        policies = self.policies.current()
        from_labels = self.labels.refresh(services)
        found = match_all(policies, services, from_labels)
        assignments, conflicts = found.assignments, found.conflicts
        self.labels.report(_pause_problems(assignments))
        self.metrics.label_policies.set(len(from_labels))
        self.status.conflicts = [c.message for c in conflicts]
        idle = idle_policies(policies, assignments, conflicts, found.shadowed)
        for message in sorted(set(idle) - set(self.status.idle_policies)):  # once, not every tick
            log.warning(message, extra={"event": "policy_idle"})
        self.status.idle_policies = idle
        shadowed = [s.message for s in found.shadowed]
        for message in sorted(set(shadowed) - set(self.status.shadowed)):
            log.warning(message, extra={"event": "policy_shadowed"})
        self.status.shadowed = shadowed
        if only is None:
            self._forget_gone(assignments)
            if self.failover is not None:
                # Paused means hands off: no failover action (scaleUp, forceUpdate) either.
                self.failover.set_managed(
                    (a.service, a.policy.spec) for a in assignments if not read_pause(a.service.labels).paused
                )
        else:
            assignments = [a for a in assignments if a.service.name in only]
        for conflict in conflicts:
            log.warning(
                conflict.message, extra={"event": "policy_conflict", "service": conflict.service.name}
            )

        readings = await self._fetch(assignments)
        # Every service is decided first, in one go (no I/O); only those that need a scale
        # call become tasks, so a pass over 10,000 steady services starts none.
        planned = [self._services.plan(a, readings) for a in assignments]
        records = [p for p in planned if isinstance(p, ServiceRecord)]
        scaled = await asyncio.gather(
            *(
                self._services.scale(order, readings, stopping=self._stopping)
                for order in planned
                if isinstance(order, ScaleOrder)
            )
        )
        records += [r for r in scaled if r is not None]
        for record in records:
            self.status.records[record.service] = record
        return PassResult(
            services=tuple(a.service.name for a in assignments),
            scaled=tuple(r.service for r in records if r.outcome is Outcome.SCALED),
            failed=tuple(r.service for r in records if r.outcome is Outcome.FAILED),
        )

    def _forget_gone(self, assignments: Sequence[Assignment]) -> None:
        """Drop engines and records of services no policy governs any more (removed or relabelled)."""
        live = {(a.policy.name, a.service.name) for a in assignments}
        for key in [k for k in self._engines if k not in live]:
            del self._engines[key]
        self._services.forget_gone({a.service.id for a in assignments})
        governed = {a.service.name for a in assignments}
        for name in [n for n in self.status.records if n not in governed]:
            del self.status.records[name]  # and with it the gauges of its last pass
            self.metrics.forget_service(name)

    async def _fetch(self, assignments: Sequence[Assignment]) -> dict[MetricRequest, MetricReading]:
        """One call per source for every request of this pass; a failed source marks its readings missing."""
        by_kind: dict[str, list[MetricRequest]] = {}
        for a in assignments:
            if a.service.is_global or a.service.updating:
                continue  # not decided on this pass, so not worth a query
            for request in metric_requests(a.policy, a.service.name):
                by_kind.setdefault(request.kind, []).append(request)

        async def fetch_one(kind: str, requests: list[MetricRequest]) -> dict[MetricRequest, MetricReading]:
            source = self.sources.get(kind)
            if source is None:
                why = f"no {kind} source configured (see 'swarm-autoscaler run --help')"
                return {r: MetricReading.missing(r.metric, why) for r in requests}
            try:
                # Sources time out on their own; this caps a source that does not.
                async with asyncio.timeout(self.service_timeout):
                    got = await source.fetch(requests)
            except Exception as exc:
                self.metrics.source_errors.labels(kind).inc()
                if isinstance(exc, TimeoutError):
                    why = f"{kind}: no answer within {self.service_timeout:g} s"
                else:
                    why = bounded(f"{kind}: {type(exc).__name__}: {exc}")
                log.warning("metric fetch failed: %s", why, extra={"event": "source_error", "source": kind})
                return {r: MetricReading.missing(r.metric, why) for r in requests}
            return {r: got.get(r) or MetricReading.missing(r.metric, f"{kind}: no data") for r in requests}

        results = await asyncio.gather(*(fetch_one(k, rs) for k, rs in by_kind.items()))
        merged: dict[MetricRequest, MetricReading] = {}
        for part in results:
            merged.update(part)
        return merged

    # -- forever -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Pass every ``interval`` and soon after events, until ``stop()``."""
        watcher = asyncio.create_task(self._watch_events(), name="autoscaler-events")
        try:
            while not self._stopping.is_set():
                self._pending = set()
                self._wake.clear()
                with self._first_pass_heap():
                    self.policies.reload()
                    self._reload_requested = False
                    await self.reconcile()
                await self._until_next_tick(self.clock() + self.interval)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    async def _until_next_tick(self, deadline: float) -> None:
        while not self._stopping.is_set():
            remaining = deadline - self.clock()
            if remaining <= 0:
                return
            if not await self._wait_for_wake(remaining):
                return
            # Debounce: a burst of task events for one rollout becomes one early pass.
            await self._wait_for_wake(self.debounce, wake=False)
            if self._stopping.is_set():
                return
            pending, self._pending = self._pending, set()
            self._wake.clear()
            if self._reload_requested:
                self._reload_requested = False
                self.policies.reload()
                pending = None
            await self.reconcile(only=None if pending is None else frozenset(pending))

    async def _wait_for_wake(self, delay: float, *, wake: bool = True) -> bool:
        """Wait ``delay`` (injected sleep), or less if stopped (or woken); True if woken early."""
        timer: asyncio.Future[Any] = asyncio.ensure_future(self.sleep(delay))
        waiters: set[asyncio.Future[Any]] = {timer, asyncio.ensure_future(self._stopping.wait())}
        woken: asyncio.Future[Any] | None = None
        if wake:
            woken = asyncio.ensure_future(self._wake.wait())
            waiters.add(woken)
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        return woken in done and timer not in done

    async def _watch_events(self) -> None:
        """Nudge the loop on Swarm events; reconnect after errors (the tick covers the gap)."""
        while not self._stopping.is_set():
            try:
                async for event in self.target.events():
                    self.nudge(touched_services(event))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.metrics.target_errors.labels("events").inc()
                log.warning("event stream failed, retrying: %s: %s", type(exc).__name__, exc)
            await self._wait_for_wake(self.interval, wake=False)
