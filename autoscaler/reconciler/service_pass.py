"""Deciding and scaling one service within a pass, isolated from every other service.

A pass first ``plan``s every service: deciding needs no I/O, so it runs straight through,
and most services end there with their record (unchanged, held, dry run...). Only a
service whose decision needs a scale call comes back as a ``ScaleOrder``, which ``scale``
carries out under the per-service timeout. Anything either step raises is caught here and
becomes a FAILED record: one broken service (a bad query, a Docker error, an engine bug)
must never stall the rest of the swarm.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from autoscaler.core.decision import Decision, MetricReading
from autoscaler.core.engine import Engine
from autoscaler.core.observation import MetricRequest, ServiceState
from autoscaler.core.policy import PolicySpec, ScalingPolicy
from autoscaler.errors import TargetError, VersionConflictError
from autoscaler.observability.metrics import ControllerMetrics
from autoscaler.policy_sources.label_controls import Pause, read_pause
from autoscaler.reconciler import scale_record
from autoscaler.reconciler.matching import Assignment, metric_requests
from autoscaler.reconciler.ports import FailoverHooks, Leadership, Target
from autoscaler.reconciler.records import Outcome, ServiceRecord, bounded

log = logging.getLogger("autoscaler.reconciler")

GLOBAL_REASON = "global-mode service: Swarm runs one task per node, there is no replica count to set"
UPDATING_REASON = "rolling update in progress (UpdateStatus.State={state}); held until it completes"


@dataclass
class EngineSlot:
    """An engine with the service incarnation it remembers: a re-created service gets a fresh one."""

    service_id: str
    spec: PolicySpec
    engine: Engine


@dataclass(frozen=True, slots=True)
class ScaleOrder:
    """A decision that needs a scale call, with what ``scale`` needs to make and record it."""

    policy: ScalingPolicy
    service: ServiceState
    engine: Engine
    decision: Decision
    replicas: int  # the count to set: the decision's, or a pause's pausedReplicas
    source: str  # where the policy came from, for the record
    pause: Pause | None = None  # set when scaling to pausedReplicas (once per pause)


class ServiceReconciler:
    def __init__(
        self,
        *,
        target: Target,
        metrics: ControllerMetrics,
        engines: dict[tuple[str, str], EngineSlot],
        clock: Callable[[], float],
        dry_run: bool,
        failover: FailoverHooks | None = None,
        leadership: Leadership | None = None,
        service_timeout: float = 30.0,
        max_concurrent_calls: int = 8,
    ) -> None:
        self.target = target
        self.metrics = metrics
        self.engines = engines
        self.clock = clock
        self.dry_run = dry_run
        self.failover = failover
        self.leadership = leadership
        self.service_timeout = service_timeout
        # A deploy that moves 1000 services at once must not open 1000 updates on one daemon.
        self._calls = asyncio.Semaphore(max_concurrent_calls)
        # Per service id: when it was first seen paused, and the pause whose pausedReplicas
        # was applied (it is applied once per pause, then the count is left alone).
        self._paused_since: dict[str, float] = {}
        self._pause_applied: dict[str, tuple[int | None, str | None]] = {}
        # The clamps of each service's last decision, to log a hold when it starts and ends.
        self._last_limits: dict[str, tuple[str, ...]] = {}

    def plan(
        self, assignment: Assignment, readings: Mapping[MetricRequest, MetricReading]
    ) -> ServiceRecord | ScaleOrder:
        """Decide one service, without I/O: its record for this pass, or the scale call it needs."""
        policy, service = assignment.policy, assignment.service
        try:
            planned = self._plan(policy, service, readings, assignment.source)
        except Exception as exc:
            planned = self._failed(policy, service, exc)
        if isinstance(planned, ScaleOrder):
            return planned
        self.metrics.outcomes.inc(service.name, planned.outcome.value)
        return dataclasses.replace(planned, source=assignment.source)

    async def scale(
        self,
        order: ScaleOrder,
        readings: Mapping[MetricRequest, MetricReading],
        *,
        stopping: asyncio.Event,
    ) -> ServiceRecord | None:
        """Make one planned scale call; None when shutdown began before it started."""
        if stopping.is_set():
            return None
        policy, service = order.policy, order.service
        try:
            async with asyncio.timeout(self.service_timeout):
                record = await self._scale(order, readings)
        except TimeoutError:
            error = f"no answer from Docker within {self.service_timeout:g} s; retried next pass"
            record = self._record(policy, service, Outcome.FAILED, f"failed: {error}", error=error)
            self.metrics.target_errors.labels("timeout").inc()
            log.error("%s: %s", service.name, error, extra={"event": "failure", "service": service.name})
        except Exception as exc:
            record = self._failed(policy, service, exc)
        self.metrics.outcomes.inc(service.name, record.outcome.value)
        return dataclasses.replace(record, source=order.source)

    def _failed(self, policy: ScalingPolicy, service: ServiceState, exc: Exception) -> ServiceRecord:
        error = bounded(f"{type(exc).__name__}: {exc}")
        if isinstance(exc, TargetError):
            self.metrics.target_errors.labels("scale").inc()
        log.exception(
            "%s: reconcile failed: %s",
            service.name,
            exc,
            extra={"event": "failure", "service": service.name},
        )
        return self._record(policy, service, Outcome.FAILED, f"failed: {error}", error=error)

    def _record(
        self,
        policy: ScalingPolicy,
        service: ServiceState,
        outcome: Outcome,
        reason: str,
        decision: Decision | None = None,
        *,
        error: str | None = None,
    ) -> ServiceRecord:
        slot = self.engines.get((policy.name, service.name)) if decision is not None else None
        pause = read_pause(service.labels)
        return ServiceRecord(
            pause=pause if pause.paused else None,
            paused_since=self._paused_since.get(service.id) if pause.paused else None,
            service=service.name,
            service_id=service.id,
            policy=policy,
            at=self.clock(),
            outcome=outcome,
            reason=bounded(reason),
            current=service.replicas,
            running=service.running,
            decision=decision,
            error=None if error is None else bounded(error),
            bounds=slot.engine.bounds if slot is not None else None,
        )

    def _plan(
        self,
        policy: ScalingPolicy,
        service: ServiceState,
        readings: Mapping[MetricRequest, MetricReading],
        source: str,
    ) -> ServiceRecord | ScaleOrder:
        if service.replicas is None:
            return self._record(policy, service, Outcome.SKIPPED, GLOBAL_REASON)
        if service.updating:
            reason = UPDATING_REASON.format(state=service.update_state)
            log.info("%s: %s", service.name, reason, extra={"event": "held", "service": service.name})
            return self._record(policy, service, Outcome.HELD, reason)

        engine = self._engine_for(policy, service)
        metric_readings = self._readings_for(policy, service.name, readings)
        pause = read_pause(service.labels)
        if pause.paused:
            return self._plan_paused(engine, policy, service, metric_readings, pause, source)
        self._resumed(service)
        decision = self._decide(engine, policy, service, metric_readings)
        if decision.desired == service.replicas:
            return self._record(policy, service, Outcome.UNCHANGED, decision.reason, decision)
        if self.dry_run:
            self._log_action(service, decision, "dry run, not scaling")
            return self._record(policy, service, Outcome.DRY_RUN, decision.reason, decision)
        if self.leadership is not None and not self.leadership.is_leader():
            # Standbys keep deciding so their engines hold a warm history when they take over.
            reason = f"{decision.reason}; standby: another controller holds the lease"
            return self._record(policy, service, Outcome.STANDBY, reason, decision)
        return ScaleOrder(policy, service, engine, decision, decision.desired, source)

    async def _scale(
        self, order: ScaleOrder, readings: Mapping[MetricRequest, MetricReading]
    ) -> ServiceRecord:
        if order.pause is not None:
            return await self._scale_paused(order, order.pause)
        # On a version conflict someone changed the service since we listed it: re-read it and
        # decide again, once.
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(2), retry=retry_if_exception_type(VersionConflictError), reraise=True
        ):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    replanned = await self._replan(order, readings)
                    if isinstance(replanned, ServiceRecord):
                        return replanned
                    order = replanned
                async with self._calls:
                    await self.target.scale(
                        order.service,
                        order.replicas,
                        labels=scale_record.labels_for(
                            order.engine, order.service, order.replicas, self.clock()
                        ),
                    )
        service, decision = order.service, order.decision
        assert service.replicas is not None  # checked by _plan, on this exact state
        order.engine.record_scale(
            at=self.clock(), from_replicas=service.replicas, to_replicas=decision.desired
        )
        self._log_action(service, decision, "scaled")
        return self._record(order.policy, service, Outcome.SCALED, decision.reason, decision)

    async def _replan(
        self, order: ScaleOrder, readings: Mapping[MetricRequest, MetricReading]
    ) -> ServiceRecord | ScaleOrder:
        """The plan for the service as it is now, after a version conflict."""
        name = order.service.name
        log.info("%s: version conflict, re-reading", name, extra={"event": "conflict"})
        async with self._calls:
            fresh = await self.target.get_service(name)
        if fresh is None:
            gone = "service removed while scaling it"
            return self._record(order.policy, order.service, Outcome.SKIPPED, gone)
        # Paused meanwhile (e.g. `swarm-autoscaler pause` won the compare-and-swap): the plan
        # for the fresh state honours it.
        return self._plan(order.policy, fresh, readings, order.source)

    def _plan_paused(
        self,
        engine: Engine,
        policy: ScalingPolicy,
        service: ServiceState,
        readings: Mapping[str, MetricReading],
        pause: Pause,
        source: str,
    ) -> ServiceRecord | ScaleOrder:
        """Leave the count alone (after scaling to pausedReplicas once: a ScaleOrder).

        The engine still decides, so its history (stabilization, scale events) stays current
        and resuming continues from it, within the policy's rate limits, with no catch-up.
        """
        assert service.replicas is not None
        # pausedAt when given (a new pause brings a new one), else when first seen paused.
        since = pause.at_seconds or self._paused_since.get(service.id) or self.clock()
        self._paused_since[service.id] = since
        self.metrics.observe_pause(service.name, paused=True, since=since)
        hold = self.failover.hold_reason(service.name) if self.failover is not None else None
        decision = engine.decide(
            now=self.clock(),
            current=service.replicas,
            running=service.running,
            readings=readings,
            changed_at=service.updated_at,
            hold_scale_down=hold,
        )
        current = service.replicas
        wanted = pause.replicas
        if wanted is None or self._pause_applied.get(service.id) == pause.key or wanted == current:
            if wanted is not None:
                self._pause_applied[service.id] = pause.key
            reason = f"{pause.describe()}: replica count left at {current}{_would(decision, current)}"
            return self._record(policy, service, Outcome.PAUSED, reason, decision)
        once = _once(pause, current, wanted)
        if self.dry_run:
            return self._record(policy, service, Outcome.DRY_RUN, f"{once} (dry run, not scaling)", decision)
        if self.leadership is not None and not self.leadership.is_leader():
            reason = f"{once}; standby: another controller holds the lease"
            return self._record(policy, service, Outcome.STANDBY, reason, decision)
        return ScaleOrder(policy, service, engine, decision, wanted, source, pause)

    async def _scale_paused(self, order: ScaleOrder, pause: Pause) -> ServiceRecord:
        """Scale a paused service to its pausedReplicas, once per pause."""
        policy, service, decision, wanted = order.policy, order.service, order.decision, order.replicas
        assert service.replicas is not None  # checked by _plan_paused, on this exact state
        current = service.replicas
        once = _once(pause, current, wanted)
        try:
            async with self._calls:
                await self.target.scale(service, wanted)
        except VersionConflictError:
            reason = f"{once}: the service changed while scaling it; done on the next pass"
            return self._record(policy, service, Outcome.HELD, reason, decision)
        self._pause_applied[service.id] = pause.key
        order.engine.record_scale(at=self.clock(), from_replicas=current, to_replicas=wanted)
        log.warning(
            "%s: paused at %d replicas (was %d)",
            service.name,
            wanted,
            current,
            extra={
                "event": "action",
                "action": "paused",
                "service": service.name,
                "from": current,
                "to": wanted,
            },
        )
        done = f"{once}: done{_would(decision, current)}"
        return self._record(policy, service, Outcome.SCALED, done, decision)

    def forget_gone(self, live_ids: set[str]) -> None:
        """Drop the pause memory of services no longer governed (removed, or their policy gone)."""
        for memory in (self._paused_since, self._pause_applied):
            for service_id in [i for i in memory if i not in live_ids]:
                del memory[service_id]

    def _resumed(self, service: ServiceState) -> None:
        if self._paused_since.pop(service.id, None) is not None:
            log.info("%s: resumed (pause labels removed)", service.name, extra={"event": "resumed"})
            self.metrics.observe_pause(service.name, paused=False, since=None)
        self._pause_applied.pop(service.id, None)

    def _decide(
        self,
        engine: Engine,
        policy: ScalingPolicy,
        service: ServiceState,
        readings: Mapping[str, MetricReading],
    ) -> Decision:
        assert service.replicas is not None
        hold = self.failover.hold_reason(service.name) if self.failover is not None else None
        now = self.clock()  # Unix seconds: also the wall time schedules are read at
        decision = engine.decide(
            now=now,
            current=service.replicas,
            running=service.running,
            readings=readings,
            changed_at=service.updated_at,
            hold_scale_down=hold,
            wall_time=now,
        )
        if self.failover is not None:
            decision = self.failover.during_failover(service.name, decision)
        self.metrics.count_decision(service.name, decision)
        log.log(
            self._decision_level(service.name, decision),
            "%s: current=%d running=%d desired=%d (%s): %s",
            service.name,
            decision.current,
            decision.running,
            decision.desired,
            decision.direction.value,
            decision.reason,
            extra={
                "event": "decision",
                "service": service.name,
                "policy": policy.name,
                "current": decision.current,
                "running": decision.running,
                "desired": decision.desired,
                "limits": list(decision.limits),
                "panic": decision.panic,
                "fallback": "Fallback" in decision.limits,
                "metrics": {m.name: m.value for m in decision.metrics},
            },
        )
        return decision

    def _decision_level(self, service: str, decision: Decision) -> int:
        """INFO for a change, a hold that starts, ends or changes, and a failed reading;
        DEBUG for the same answer again.

        At INFO every decision was ~400 bytes per service per tick (690 MB a day for 100
        services at 5 s) saying "nothing to do" almost every time. A hold that lasts (a
        scale-down inside its window, a service pinned at maxReplicas) is told when it
        starts and when it ends, not every tick.
        """
        before = self._last_limits.get(service)
        self._last_limits[service] = decision.limits
        changing = decision.desired != decision.current
        failed = any(metric.desired is None for metric in decision.metrics)
        if changing or failed or decision.limits != before:
            return logging.INFO
        return logging.DEBUG

    def _log_action(self, service: ServiceState, decision: Decision, what: str) -> None:
        log.warning(
            "%s: %s %d -> %d",
            service.name,
            what,
            decision.current,
            decision.desired,
            extra={
                "event": "action",
                "action": what,
                "service": service.name,
                "from": decision.current,
                "to": decision.desired,
            },
        )

    @staticmethod
    def _readings_for(
        policy: ScalingPolicy, service: str, readings: Mapping[MetricRequest, MetricReading]
    ) -> dict[str, MetricReading]:
        found: dict[str, MetricReading] = {}
        for request in metric_requests(policy, service):
            found[request.metric] = readings.get(request) or MetricReading.missing(
                request.metric, "not fetched"
            )
        return found

    def _engine_for(self, policy: ScalingPolicy, service: ServiceState) -> Engine:
        assert service.replicas is not None
        key = (policy.name, service.name)
        slot = self.engines.get(key)
        if slot is None or slot.service_id != service.id:
            now = self.clock()
            engine = Engine(policy.spec, now=now, current=service.replicas)
            scale_record.restore(engine, service, now)
            self.engines[key] = EngineSlot(service.id, policy.spec, engine)
            return engine
        if slot.spec != policy.spec:
            slot.engine.update_spec(policy.spec)
            slot.spec = policy.spec
        return slot.engine


def _once(pause: Pause, current: int, wanted: int) -> str:
    return f"{pause.describe()}: scale {current} -> {wanted} once, then leave it there until resumed"


def _would(decision: Decision, current: int) -> str:
    return f"; unpaused, the policy would want {decision.desired}" if decision.desired != current else ""
