"""High availability: one leader among the controller replicas, by a lease held on Swarm.

The lease is two labels on the controller's OWN service spec (``Spec.Labels``), written
with ``POST /services/{id}/update?version=N`` (``targets.service_labels.ServiceLabelStore``):
Swarm rejects the write if the spec changed since it was read at version N, so two
candidates can never both take it.

Why a service label and not a Docker config or secret: configs are immutable (no update,
so no compare-and-swap; remove + create is not atomic and races). Why not a node label or
the Raft leader: a service label needs no node write rights and moves with the service.
Why it does not restart the controller: Swarm restarts tasks only when ``TaskTemplate``
changes; ``Spec.Labels`` is outside it (checked on the lab by
``tests/integration/test_lease_swarm.py::test_label_writes_do_not_restart_tasks``).

Timing and safety rules are pure, in ``autoscaler.core.lease_rules``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from autoscaler.core import lease_rules as rules
from autoscaler.errors import TemporaryTargetError, VersionConflictError
from autoscaler.reconciler.ports import LabelStore

log = logging.getLogger(__name__)


def default_identity() -> str:
    """Unique per process: two processes sharing an identity could both believe they lead.

    In a Swarm task the hostname is the container ID, so the holder label names the task.
    """
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


class _LeaseMetrics:
    """Summed over replicas, ``autoscaler_lease_leader`` must be exactly 1 (charts/prometheus/alerts.yml)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.leader = Gauge(
            "autoscaler_lease_leader", "1 while this replica holds the leader lease.", registry=registry
        )
        self.transitions = Counter(
            "autoscaler_lease_transitions",
            "Times this replica took or lost the lease.",
            ["change"],
            registry=registry,
        )


class Lease:
    """Take and keep the lease; ``is_leader()`` tells the loop whether it may scale now.

    ``run()`` loops until cancelled; ``release()`` hands the lease over on a clean shutdown
    so a standby takes over at once instead of after a lease period.
    """

    def __init__(
        self,
        store: LabelStore,
        *,
        identity: str | None = None,
        lease_seconds: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_change: Callable[[bool], None] | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.identity = identity or default_identity()
        self.timing = rules.LeaseTiming(lease_seconds)
        self._store = store
        self._clock = clock
        self._wall_clock = wall_clock
        self._on_change = on_change
        self._observation: rules.Observation | None = None
        self._valid_until: float | None = None
        self._was_leader = False
        self._became_leader = asyncio.Event()
        self.last_reason = "not started"
        self._metrics = _LeaseMetrics(registry) if registry is not None else None

    def is_leader(self) -> bool:
        leading = self._valid_until is not None and self._clock() < self._valid_until
        if not leading and self._was_leader:
            self._set_leader(False, "lease lapsed: no successful renewal in time")
        return leading

    async def wait_leader(self) -> None:
        while not self.is_leader():
            self._became_leader.clear()
            await self._became_leader.wait()

    async def run(self) -> None:
        while True:
            delay = await self.step()
            await asyncio.sleep(delay)

    async def step(self) -> float:
        """One read-decide-write round; returns the seconds to wait before the next one."""
        try:
            current = await self._store.read()
        except TemporaryTargetError as exc:
            self.last_reason = f"cannot read the lease: {exc}"
            log.warning("%s: %s", self.identity, self.last_reason)
            self.is_leader()  # lapses leadership if this went on too long
            return self.timing.retry_every
        now = self._clock()
        record = rules.LeaseRecord.from_labels(current.labels)
        self._observation = rules.observe(self._observation, record, current.version, now)
        plan = rules.plan(self.identity, self._observation, now, self.timing, leading=self.is_leader())
        self.last_reason = plan.reason
        if plan.step is rules.Step.WAIT:
            return plan.wait
        if plan.step is rules.Step.STEP_DOWN:
            self._valid_until = None
            self._set_leader(False, plan.reason)
            return self.timing.renew_every
        return await self._write(current.version, plan.reason)

    async def _write(self, version: int, reason: str) -> float:
        started = self._clock()
        labels = rules.holder_labels(self.identity, self._wall_clock(), self.timing.lease_seconds)
        try:
            await self._store.write(version, labels)
        except VersionConflictError:
            return 0.0  # someone wrote in between: read again right away and re-plan
        except TemporaryTargetError as exc:
            self.last_reason = f"lease write failed: {exc}"
            log.warning("%s: %s", self.identity, self.last_reason)
            self.is_leader()
            return self.timing.retry_every
        self._valid_until = rules.valid_until(started, self.timing)
        self._observation = None  # our own write: not something to time out
        self._set_leader(True, reason)
        return self.timing.renew_every

    async def release(self) -> None:
        """Stop acting first, then mark the lease released so a standby need not wait."""
        was_leading = self.is_leader()
        self._valid_until = None
        self._set_leader(False, "released")
        if not was_leading:
            return
        for _ in range(3):
            try:
                current = await self._store.read()
                if rules.LeaseRecord.from_labels(current.labels).holder != self.identity:
                    return
                await self._store.write(current.version, rules.released_labels())
                return
            except VersionConflictError:
                continue
            except TemporaryTargetError as exc:
                log.warning("could not release the lease (standbys will wait it out): %s", exc)
                return

    def _set_leader(self, leading: bool, reason: str) -> None:
        if leading == self._was_leader:
            return
        self._was_leader = leading
        if leading:
            self._became_leader.set()
        log.warning("%s %s the lease: %s", self.identity, "took" if leading else "lost", reason)
        if self._metrics is not None:
            self._metrics.leader.set(1 if leading else 0)
            self._metrics.transitions.labels("took" if leading else "lost").inc()
        if self._on_change is not None:
            self._on_change(leading)
