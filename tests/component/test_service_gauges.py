"""The per-service gauges are the reconciler's records, read at scrape time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from autoscaler.reconciler.loop import Reconciler

from .fakes import FakeSource, FakeTarget, service, write_policy

MakeReconciler = Callable[..., Reconciler]
GAUGES = {"desired_replicas", "current_replicas", "running_replicas", "min_replicas", "max_replicas", "panic"}


def per_service(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    """(gauge name without the namespace, service) -> value, from a real exposition."""
    text = generate_latest(registry).decode()
    samples = (sample for family in text_string_to_metric_families(text) for sample in family.samples)
    named = ((sample.name.removeprefix("autoscaler_"), sample) for sample in samples)
    return {(name, sample.labels["service"]): sample.value for name, sample in named if name in GAUGES}


async def test_gauges_follow_the_last_pass_of_each_service(
    policy_dir: Path, make_reconciler: MakeReconciler, registry: CollectorRegistry
) -> None:
    write_policy(policy_dir, "web", target=10.0, max_replicas=7)
    write_policy(policy_dir, "api", target=10.0, max_replicas=5)
    target = FakeTarget(service("web", 2), service("api", 1, running=0))
    reconciler = make_reconciler(target, FakeSource({("web", "rps"): 45.0, ("api", "rps"): 5.0}))

    await reconciler.run_once()
    gauges = per_service(registry)
    assert gauges[("desired_replicas", "web")] == 5  # ceil(45 / 10), scaled
    assert gauges[("current_replicas", "web")] == 2  # as listed at the start of the pass
    assert gauges[("max_replicas", "web")] == 7 and gauges[("min_replicas", "web")] == 1
    assert gauges[("running_replicas", "api")] == 0 and gauges[("panic", "api")] == 0

    # A rolling update holds the service: current and running are still observed, but no
    # decision was made, so there is no desired (nor panic) to show for this pass.
    target.change("web", update_state="updating")
    await reconciler.reconcile()
    gauges = per_service(registry)
    assert gauges[("current_replicas", "web")] == 5
    assert ("desired_replicas", "web") not in gauges and ("panic", "web") not in gauges
    assert gauges[("desired_replicas", "api")] == 1

    # A removed service leaves no ghost series behind.
    del target.services["api"]
    await reconciler.reconcile()
    assert {svc for _, svc in per_service(registry)} == {"web"}


async def test_a_global_service_has_no_replica_gauges(
    policy_dir: Path, make_reconciler: MakeReconciler, registry: CollectorRegistry
) -> None:
    write_policy(policy_dir, "agent", target=10.0)
    reconciler = make_reconciler(FakeTarget(service("agent", None)), FakeSource({("agent", "rps"): 5.0}))

    await reconciler.run_once()

    assert reconciler.status.records["agent"].outcome.value == "skipped"
    assert per_service(registry) == {}
