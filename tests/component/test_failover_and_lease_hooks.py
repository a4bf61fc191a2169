"""The loop's seams to the failover monitor and the HA lease, with in-memory stand-ins."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from timing import FakeClock, eventually

from autoscaler.cli import EXIT_OK
from autoscaler.cli.run import serve
from autoscaler.core.decision import Decision
from autoscaler.core.observation import ServiceState
from autoscaler.core.policy import PolicySpec
from autoscaler.policy_sources.loader import PolicyStore
from autoscaler.reconciler.loop import Reconciler
from autoscaler.reconciler.records import Outcome
from autoscaler.reconciler.status import ReconcilerStatus
from autoscaler.settings import load_settings

from .fakes import FakeSource, FakeTarget, service, write_policy
from .test_serve import Started

MakeReconciler = Callable[..., Reconciler]


class FakeFailover:
    def __init__(self) -> None:
        self.managed: list[str] = []
        self.holding: dict[str, str] = {}

    def set_managed(self, governed: Iterable[tuple[ServiceState, PolicySpec]]) -> None:
        self.managed = sorted(s.name for s, _ in governed)

    def hold_reason(self, service: str) -> str | None:
        return self.holding.get(service)

    def during_failover(self, service: str, decision: Decision) -> Decision:
        hold = self.holding.get(service)
        return decision if hold is None else replace(decision, reason=f"{decision.reason}; during {hold}")

    def failovers(self) -> list[dict[str, Any]]:
        return [{"service": name, "why": why} for name, why in self.holding.items()]


class FakeLease:
    def __init__(self, leading: bool) -> None:
        self.leading = leading

    def is_leader(self) -> bool:
        return self.leading


async def test_failover_hold_blocks_scale_down_and_is_reported(
    policy_dir: Path, make_reconciler: MakeReconciler
) -> None:
    write_policy(policy_dir, "web", target=10.0, down_window=0)
    write_policy(policy_dir, "api", target=10.0, down_window=0)
    target = FakeTarget(service("web", 6), service("api", 6))
    failover = FakeFailover()
    failover.holding["web"] = "failover of node-2: 2 tasks not yet replaced"
    source = FakeSource({("web", "rps"): 10.0, ("api", "rps"): 10.0})  # both want 1
    reconciler = make_reconciler(target, source, failover=failover)

    await reconciler.run_once()

    assert failover.managed == ["api", "web"]
    assert [c.service for c in target.scale_calls] == ["api"], "held service scaled down"
    web = reconciler.status.records["web"]
    assert web.outcome is Outcome.UNCHANGED and "node-2" in web.reason
    assert ReconcilerStatus(reconciler).decisions()["failovers"] == failover.failovers()


async def test_standby_decides_but_does_not_scale_until_it_leads(
    policy_dir: Path, make_reconciler: MakeReconciler
) -> None:
    write_policy(policy_dir, "web")
    target = FakeTarget(service("web", 1))
    lease = FakeLease(leading=False)
    reconciler = make_reconciler(target, FakeSource({("web", "rps"): 30.0}), leadership=lease)

    await reconciler.run_once()
    record = reconciler.status.records["web"]
    assert target.scale_calls == [] and record.outcome is Outcome.STANDBY
    assert record.decision is not None and record.decision.desired > 1

    lease.leading = True
    await reconciler.reconcile()
    assert [c.replicas for c in target.scale_calls] == [record.decision.desired]


class FakeRunningLease(FakeLease):
    """A lease the controller runs: ``run`` until cancelled, ``release`` on shutdown."""

    def __init__(self, leading: bool) -> None:
        super().__init__(leading)
        self.running = False
        self.released_after_scales: int | None = None
        self.target: FakeTarget | None = None

    async def run(self) -> None:
        self.running = True
        await asyncio.Event().wait()

    async def release(self) -> None:
        assert self.target is not None
        self.released_after_scales = len(self.target.scale_calls)


async def test_run_holds_the_lease_while_serving_and_releases_it_on_sigterm(
    policy_dir: Path, clock: FakeClock
) -> None:
    write_policy(policy_dir, "web")
    target = FakeTarget(service("web", 1))
    lease = FakeRunningLease(leading=True)
    lease.target = target
    settings = load_settings(overrides={"policies": {"paths": [policy_dir]}, "http": {"listen": ""}})
    started: Started = asyncio.get_running_loop().create_future()
    run = asyncio.create_task(
        serve(
            settings,
            target=target,
            sources={"prometheus": FakeSource({("web", "rps"): 30.0})},
            catalog=PolicyStore([policy_dir]),
            clock=clock,
            sleep=clock.sleep,
            lease=lease,
            started=started,
        )
    )
    reconciler, server = await asyncio.wait_for(started, timeout=5)
    assert server is None, "listen '' must disable the HTTP server"
    await eventually(lambda: reconciler.status.passes >= 1 and lease.running, what="first pass")
    assert ReconcilerStatus(reconciler).decisions()["leader"] is True

    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(run, timeout=5) == EXIT_OK
    assert lease.released_after_scales == len(target.scale_calls) == 1
