"""The reconcile loop against a fake Swarm and fake metrics, with the real engine and policy store."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from pathlib import Path

from timing import FakeClock

from autoscaler.core.observation import ServiceState
from autoscaler.reconciler.loop import Reconciler
from autoscaler.reconciler.records import Outcome

from .fakes import FakeSource, FakeTarget, refused, service, write_policy

MakeReconciler = Callable[..., Reconciler]


async def test_scales_up_to_the_per_replica_target(policy_dir: Path, make_reconciler: MakeReconciler) -> None:
    write_policy(policy_dir, "web", target=10.0, max_replicas=20)
    target = FakeTarget(service("web", 2))
    load = 55.0
    reconciler = make_reconciler(target, FakeSource({("web", "rps"): load}))

    result = await reconciler.run_once()

    wanted = math.ceil(load / 10.0)
    assert result.ok and result.scaled == ("web",)
    assert [(c.service, c.replicas) for c in target.scale_calls] == [("web", wanted)]
    assert target.services["web"].replicas == wanted
    record = reconciler.status.records["web"]
    assert record.outcome is Outcome.SCALED and record.decision is not None
    assert record.decision.desired == wanted


async def test_scale_down_waits_for_the_stabilization_window(
    policy_dir: Path, make_reconciler: MakeReconciler, clock: FakeClock
) -> None:
    window = 120
    write_policy(policy_dir, "web", target=10.0, down_window=window)
    target = FakeTarget(service("web", 6))
    source = FakeSource({("web", "rps"): 20.0})  # wants 2
    reconciler = make_reconciler(target, source)

    await reconciler.run_once()
    clock.advance(window / 2)
    await reconciler.reconcile()
    assert target.scale_calls == [], "scaled down inside the stabilization window"
    assert "ScaleDownStabilized" in reconciler.status.records["web"].decision.limits  # type: ignore[union-attr]

    clock.advance(window / 2 + 1)
    await reconciler.reconcile()
    assert [c.replicas for c in target.scale_calls] == [2]


async def test_missing_metrics_never_scale_down(
    policy_dir: Path, make_reconciler: MakeReconciler, clock: FakeClock
) -> None:
    write_policy(policy_dir, "web", target=10.0, down_window=0)
    target = FakeTarget(service("web", 6))
    source = FakeSource()
    source.fail = refused()
    reconciler = make_reconciler(target, source)

    await reconciler.run_once()
    clock.advance(600)
    result = await reconciler.reconcile()

    assert target.scale_calls == []
    assert result.ok, "a missing metric is not a service failure"
    record = reconciler.status.records["web"]
    assert record.outcome is Outcome.UNCHANGED
    assert record.decision is not None and "MissingMetrics" in record.decision.limits
    assert "connection refused" in record.decision.metrics[0].reason
    assert reconciler.metrics.source_errors.labels("prometheus")._value.get() == 2


async def test_metrics_are_fetched_once_per_source_per_pass(
    policy_dir: Path, make_reconciler: MakeReconciler
) -> None:
    names = ["a", "b", "c"]
    for name in names:
        write_policy(policy_dir, name)
    source = FakeSource({(n, "rps"): 10.0 for n in names})
    reconciler = make_reconciler(FakeTarget(*(service(n, 1) for n in names)), source)

    await reconciler.run_once()

    assert len(source.fetch_calls) == 1
    assert sorted(r.service for r in source.fetch_calls[0]) == names


async def test_version_conflict_rereads_and_decides_again(
    policy_dir: Path, make_reconciler: MakeReconciler
) -> None:
    write_policy(policy_dir, "web", target=10.0, max_replicas=20)
    target = FakeTarget(service("web", 2))
    raced = False

    async def someone_scales_first(state: object) -> None:
        nonlocal raced
        if not raced:
            raced = True
            target.change("web", replicas=3, running=3)

    target.before_scale = someone_scales_first
    reconciler = make_reconciler(target, FakeSource({("web", "rps"): 80.0}))

    result = await reconciler.run_once()

    assert raced and result.ok
    record = reconciler.status.records["web"]
    assert record.outcome is Outcome.SCALED and record.decision is not None
    # Decided again on the re-read state (3 replicas), sent with the re-read version.
    assert record.decision.current == 3
    assert [(c.version, c.replicas) for c in target.scale_calls] == [(2, record.decision.desired)]


async def test_global_service_is_never_scaled(policy_dir: Path, make_reconciler: MakeReconciler) -> None:
    write_policy(policy_dir, "agent")
    target = FakeTarget(service("agent", None, running=3))
    source = FakeSource({("agent", "rps"): 1000.0})
    reconciler = make_reconciler(target, source)

    result = await reconciler.run_once()

    assert result.ok and target.scale_calls == []
    record = reconciler.status.records["agent"]
    assert record.outcome is Outcome.SKIPPED and "global" in record.reason
    assert source.fetch_calls == [], "no query for a service that will not be decided on"


async def test_service_in_a_rolling_update_is_held(policy_dir: Path, make_reconciler: MakeReconciler) -> None:
    write_policy(policy_dir, "web")
    target = FakeTarget(service("web", 2, update_state="updating"))
    reconciler = make_reconciler(target, FakeSource({("web", "rps"): 1000.0}))

    await reconciler.run_once()
    assert target.scale_calls == []
    assert reconciler.status.records["web"].outcome is Outcome.HELD

    target.change("web", update_state="completed")
    await reconciler.reconcile()
    assert len(target.scale_calls) == 1


async def test_one_failing_service_does_not_stall_the_others(
    policy_dir: Path, make_reconciler: MakeReconciler
) -> None:
    for name in ("bad", "good"):
        write_policy(policy_dir, name)
    target = FakeTarget(service("bad", 1), service("good", 1))
    target.fail_scale["bad"] = RuntimeError("daemon exploded")
    reconciler = make_reconciler(target, FakeSource({("bad", "rps"): 50.0, ("good", "rps"): 50.0}))

    result = await reconciler.run_once()

    assert result.failed == ("bad",) and result.scaled == ("good",)
    assert [c.service for c in target.scale_calls] == ["good"]
    bad = reconciler.status.records["bad"]
    assert bad.outcome is Outcome.FAILED and bad.error is not None and "daemon exploded" in bad.error
    outcomes = {"service": "bad", "outcome": "failed"}
    assert reconciler.metrics.registry.get_sample_value("autoscaler_service_outcomes_total", outcomes) == 1


async def test_dry_run_decides_but_never_scales(policy_dir: Path, make_reconciler: MakeReconciler) -> None:
    write_policy(policy_dir, "web")
    target = FakeTarget(service("web", 1))
    reconciler = make_reconciler(target, FakeSource({("web", "rps"): 50.0}), dry_run=True)

    result = await reconciler.run_once()

    assert result.ok and target.scale_calls == []
    record = reconciler.status.records["web"]
    assert record.outcome is Outcome.DRY_RUN
    assert record.decision is not None and record.decision.desired > 1


async def test_recreated_service_gets_a_fresh_engine(
    policy_dir: Path, make_reconciler: MakeReconciler, clock: FakeClock
) -> None:
    write_policy(policy_dir, "web", target=10.0, down_window=300)
    target = FakeTarget(service("web", 6, id="first"))
    source = FakeSource({("web", "rps"): 60.0})
    reconciler = make_reconciler(target, source)
    await reconciler.run_once()
    clock.advance(400)
    await reconciler.reconcile()

    # Removed and created again: the new service must not inherit the old one's history.
    del target.services["web"]
    await reconciler.reconcile()
    assert "web" not in reconciler.status.records
    target.services["web"] = service("web", 6, id="second")
    source.values[("web", "rps")] = 20.0
    clock.advance(1)
    await reconciler.reconcile()

    record = reconciler.status.records["web"]
    assert record.service_id == "second"
    # A fresh engine seeds its history with the current size, so scale-down waits a full window.
    assert record.decision is not None and "ScaleDownStabilized" in record.decision.limits
    assert target.scale_calls == []


async def test_unreachable_docker_fails_the_pass(policy_dir: Path, make_reconciler: MakeReconciler) -> None:
    write_policy(policy_dir, "web")
    target = FakeTarget(service("web", 1))
    target.fail_list = OSError("connect: no such file")
    reconciler = make_reconciler(target, FakeSource())

    result = await reconciler.run_once()

    assert not result.ok and result.target_error is not None and "no such file" in result.target_error
    assert not reconciler.status.target_reachable


async def test_a_hanging_docker_call_fails_only_that_service(
    policy_dir: Path, make_reconciler: MakeReconciler
) -> None:
    for name in ("stuck", "fine"):
        write_policy(policy_dir, name)
    target = FakeTarget(service("stuck", 1), service("fine", 1))
    never = asyncio.Event()

    async def hang_for_stuck(state: ServiceState) -> None:
        if state.name == "stuck":
            await never.wait()

    target.before_scale = hang_for_stuck
    source = FakeSource({("stuck", "rps"): 50.0, ("fine", "rps"): 50.0})
    # A short real deadline: the only way to prove the pass does not wait for the stuck call.
    reconciler = make_reconciler(target, source, service_timeout=0.2)

    result = await asyncio.wait_for(reconciler.run_once(), timeout=5)

    assert result.failed == ("stuck",) and result.scaled == ("fine",)
    stuck = reconciler.status.records["stuck"]
    assert stuck.error is not None and "within 0.2 s" in stuck.error
    assert reconciler.metrics.target_errors.labels("timeout")._value.get() == 1


async def test_a_hanging_source_counts_as_missing_metrics(
    policy_dir: Path, make_reconciler: MakeReconciler
) -> None:
    write_policy(policy_dir, "web", down_window=0)
    target = FakeTarget(service("web", 4))

    class HangingSource(FakeSource):
        async def fetch(self, requests):  # type: ignore[no-untyped-def]
            await asyncio.Event().wait()

    reconciler = make_reconciler(target, HangingSource(), service_timeout=0.2)
    result = await asyncio.wait_for(reconciler.run_once(), timeout=5)

    record = reconciler.status.records["web"]
    assert result.ok and target.scale_calls == []
    assert record.decision is not None and "MissingMetrics" in record.decision.limits
    assert "no answer within 0.2 s" in record.decision.metrics[0].reason
