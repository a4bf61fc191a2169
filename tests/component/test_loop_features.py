"""Issue 13 through the reconcile loop: the controller's clock is the schedules' wall time,
and the fallback shows in the gauges and /decisions records."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry
from timing import FakeClock

from autoscaler.reconciler.loop import Reconciler

from .fakes import FakeSource, FakeTarget, refused, service, write_policy

MakeReconciler = Callable[..., Reconciler]


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


async def test_fallback_scales_and_is_visible(
    policy_dir: Path, make_reconciler: MakeReconciler, clock: FakeClock, registry: CollectorRegistry
) -> None:
    policy = write_policy(policy_dir, "web", target=10.0)
    append(policy, "  fallback:\n    failureThreshold: 2\n    replicas: 5\n")
    target = FakeTarget(service("web", 2))
    source = FakeSource({("web", "rps"): 20.0})
    reconciler = make_reconciler(target, source)
    await reconciler.run_once()
    source.fail = refused()
    for _ in range(3):  # two failures hold, the third passes failureThreshold 2
        clock.advance(15)
        await reconciler.reconcile()
    assert [c.replicas for c in target.scale_calls] == [5]
    assert registry.get_sample_value("autoscaler_fallback_active", {"service": "web"}) == 1.0
    body = reconciler.status.records["web"].to_json()
    assert body["decision"]["fallback"] is True and "Fallback" in body["decision"]["limits"]

    source.fail = None
    clock.advance(15)
    await reconciler.reconcile()
    assert registry.get_sample_value("autoscaler_fallback_active", {"service": "web"}) == 0.0


async def test_schedules_follow_the_controllers_clock(
    policy_dir: Path, make_reconciler: MakeReconciler, clock: FakeClock, registry: CollectorRegistry
) -> None:
    hour = datetime.fromtimestamp(clock.now, tz=UTC).hour
    policy = write_policy(policy_dir, "web", target=10.0, max_replicas=20)
    append(
        policy,
        "  schedules:\n"
        f'    - name: this-hour\n      start: "0 {hour} * * *"\n      end: "0 {(hour + 1) % 24} * * *"\n'
        "      minReplicas: 6\n",
    )
    target = FakeTarget(service("web", 2))
    reconciler = make_reconciler(target, FakeSource({("web", "rps"): 20.0}))
    await reconciler.run_once()
    assert [c.replicas for c in target.scale_calls] == [6]
    assert registry.get_sample_value("autoscaler_min_replicas", {"service": "web"}) == 6.0
    body = reconciler.status.records["web"].to_json()
    assert body["min_replicas"] == 6 and "schedule this-hour" in body["reason"]
