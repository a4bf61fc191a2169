"""The reconcile loop with policies from service labels, and pause/resume, on a fake Swarm."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry
from timing import FakeClock

from autoscaler.core.observation import ServiceState
from autoscaler.reconciler.loop import Reconciler
from autoscaler.reconciler.records import Outcome
from autoscaler.reconciler.status import ReconcilerStatus

from .fakes import FakeSource, FakeTarget, service, write_policy

MakeReconciler = Callable[..., Reconciler]


def policy_labels(*, max_replicas: int = 10, target: float = 10.0, **extra: str) -> dict[str, str]:
    labels = {
        "autoscaler.enable": "true",
        "autoscaler.minReplicas": "1",
        "autoscaler.maxReplicas": str(max_replicas),
        "autoscaler.panic.enabled": "false",
        "autoscaler.metrics.rps.prometheus.query": 'sum(rate(requests_total{service="{{ service }}"}[1m]))',
        "autoscaler.metrics.rps.target.averageValue": str(target),
    }
    labels.update(extra)
    return labels


def gauge(registry: CollectorRegistry, name: str, service: str) -> float | None:
    return registry.get_sample_value(f"autoscaler_{name}", {"service": service})


async def test_a_service_with_policy_labels_is_scaled(make_reconciler: MakeReconciler) -> None:
    target = FakeTarget(service("web", 2, labels=policy_labels(target=10.0)))
    reconciler = make_reconciler(target, FakeSource({("web", "rps"): 55.0}))

    result = await reconciler.run_once()

    assert result.scaled == ("web",)
    assert target.services["web"].replicas == math.ceil(55.0 / 10.0)
    record = reconciler.status.records["web"]
    assert record.policy.name == "web" and record.source == "labels"
    assert record.to_json()["policy_source"] == "labels"


async def test_services_without_enable_are_not_governed(make_reconciler: MakeReconciler) -> None:
    labels = policy_labels()
    del labels["autoscaler.enable"]
    target = FakeTarget(service("web", 2, labels=labels))
    reconciler = make_reconciler(target, FakeSource({("web", "rps"): 55.0}))

    result = await reconciler.run_once()

    assert result.services == () and target.scale_calls == []


async def test_a_label_change_is_in_force_on_the_next_pass(
    make_reconciler: MakeReconciler, clock: FakeClock
) -> None:
    target = FakeTarget(service("web", 2, labels=policy_labels(max_replicas=4)))
    reconciler = make_reconciler(target, FakeSource({("web", "rps"): 100.0}))
    await reconciler.run_once()
    assert target.services["web"].replicas == 4

    clock.advance(60)  # past HPA's scale-up rate-limit period
    target.change("web", labels=policy_labels(max_replicas=7))
    await reconciler.reconcile()

    assert target.services["web"].replicas == 7
    assert reconciler.status.records["web"].policy.spec.max_replicas == 7


async def test_broken_labels_keep_the_last_good_policy_and_say_why_every_pass(
    make_reconciler: MakeReconciler, registry: CollectorRegistry, clock: FakeClock
) -> None:
    target = FakeTarget(
        service("web", 2, labels=policy_labels(max_replicas=4)),
        service("api", 2, labels=policy_labels(max_replicas=6)),
    )
    source = FakeSource({("web", "rps"): 100.0, ("api", "rps"): 100.0})
    reconciler = make_reconciler(target, source)
    await reconciler.run_once()
    broken = policy_labels(max_replicas=9)
    broken["autoscaler.maxReplica"] = broken.pop("autoscaler.maxReplicas")
    target.change("web", labels=broken)
    target.change("api", labels=policy_labels(max_replicas=8))

    for _ in range(2):
        clock.advance(60)
        await reconciler.reconcile()
        problems = ReconcilerStatus(reconciler).decisions()["label_problems"]
        assert problems == {
            "web": [
                "service web: label autoscaler.maxReplica: unknown field; did you mean "
                "autoscaler.maxReplicas? (the last valid policy from its labels stays in force)"
            ]
        }
        assert gauge(registry, "label_policy_problems", "web") == 1

    assert reconciler.status.records["web"].policy.spec.max_replicas == 4, "last good policy kept"
    assert target.services["web"].replicas == 4
    assert target.services["api"].replicas == 8, "another service's labels are not affected"

    target.change("web", labels=policy_labels(max_replicas=5))
    clock.advance(60)
    await reconciler.reconcile()
    assert ReconcilerStatus(reconciler).decisions()["label_problems"] == {}
    assert gauge(registry, "label_policy_problems", "web") is None
    assert target.services["web"].replicas == 5


async def test_labels_that_were_never_valid_govern_nothing(make_reconciler: MakeReconciler) -> None:
    labels = policy_labels()
    labels["autoscaler.minReplicas"] = "two"
    target = FakeTarget(service("web", 2, labels=labels))
    reconciler = make_reconciler(target, FakeSource({("web", "rps"): 100.0}))

    await reconciler.run_once()

    assert target.scale_calls == [] and "web" not in reconciler.status.records
    assert reconciler.labels.problems["web"] == [
        "service web: label autoscaler.minReplicas: must be a whole number, got 'two' "
        "(not scaled by labels until this is fixed)"
    ]


async def test_a_file_policy_naming_the_service_outranks_its_labels(
    policy_dir: Path, make_reconciler: MakeReconciler
) -> None:
    write_policy(policy_dir, "web-file", service="web", max_replicas=3)
    target = FakeTarget(service("web", 2, labels=policy_labels(max_replicas=9)))
    reconciler = make_reconciler(target, FakeSource({("web", "rps"): 100.0}))

    await reconciler.run_once()

    assert target.services["web"].replicas == 3
    assert reconciler.status.records["web"].source == "file"
    assert reconciler.status.shadowed == [
        "service 'web' is governed by file policy 'web-file' (spec.service names it); its autoscaler.* "
        "labels are ignored: a file policy naming the service outranks its labels; remove one of the two"
    ]


async def test_its_own_labels_outrank_a_selector(policy_dir: Path, make_reconciler: MakeReconciler) -> None:
    write_policy(policy_dir, "tier", selector={"tier": "front"}, max_replicas=3)
    target = FakeTarget(service("web", 2, labels=policy_labels(max_replicas=9, tier="front")))
    reconciler = make_reconciler(target, FakeSource({("web", "rps"): 100.0}))

    await reconciler.run_once()

    assert target.services["web"].replicas == 6  # doubled (HPA's 100 % per 15 s), not capped at 3
    assert reconciler.status.records["web"].source == "labels"
    assert "selector policy tier ignored" in reconciler.status.shadowed[0]
    assert reconciler.status.idle_policies == [], "an outranked selector is not idle"


async def test_paused_service_is_left_alone_and_shown_as_paused(
    policy_dir: Path, make_reconciler: MakeReconciler, registry: CollectorRegistry
) -> None:
    write_policy(policy_dir, "web", target=10.0)
    pause = {
        "autoscaler.paused": "true",
        "autoscaler.pausedBy": "ana",
        "autoscaler.pausedAt": "2026-12-01T16:00:00Z",
    }
    target = FakeTarget(service("web", 2, labels=pause))
    reconciler = make_reconciler(target, FakeSource({("web", "rps"): 100.0}))

    await reconciler.run_once()

    assert target.scale_calls == []
    record = reconciler.status.records["web"]
    assert record.outcome is Outcome.PAUSED
    assert record.reason.startswith("paused by ana at 2026-12-01T16:00:00Z (autoscaler.paused=true)")
    assert "unpaused, the policy would want 6" in record.reason  # 10, rate-limited to 2 + 4
    since = datetime(2026, 12, 1, 16, tzinfo=UTC).timestamp()
    assert record.to_json()["paused"] == {
        "paused": True,
        "replicas": None,
        "by": "ana",
        "at": pause["autoscaler.pausedAt"],
        "since": since,
    }
    assert gauge(registry, "paused", "web") == 1
    assert gauge(registry, "paused_since_timestamp_seconds", "web") == since


async def test_paused_replicas_scales_once_then_holds(
    policy_dir: Path, make_reconciler: MakeReconciler
) -> None:
    write_policy(policy_dir, "web", target=10.0)
    target = FakeTarget(service("web", 5, labels={"autoscaler.pausedReplicas": "1"}))
    reconciler = make_reconciler(target, FakeSource({("web", "rps"): 100.0}))

    await reconciler.run_once()
    assert [c.replicas for c in target.scale_calls] == [1]
    assert reconciler.status.records["web"].outcome is Outcome.SCALED

    target.change("web", replicas=3)  # someone scales it by hand while paused
    await reconciler.reconcile()
    assert [c.replicas for c in target.scale_calls] == [1], "pausedReplicas is applied once"
    assert reconciler.status.records["web"].outcome is Outcome.PAUSED

    target.change("web", labels={"autoscaler.pausedReplicas": "2"})  # a new pause count
    await reconciler.reconcile()
    assert [c.replicas for c in target.scale_calls] == [1, 2]


async def test_resume_keeps_the_engine_and_its_rate_limits(
    policy_dir: Path, make_reconciler: MakeReconciler, clock: FakeClock
) -> None:
    write_policy(policy_dir, "web", target=10.0, max_replicas=50)
    target = FakeTarget(service("web", 2, labels={"autoscaler.paused": "true"}))
    reconciler = make_reconciler(target, FakeSource({("web", "rps"): 400.0}))  # wants 40
    await reconciler.run_once()
    engine = reconciler._engines[("web", "web")].engine
    for _ in range(40):  # ten minutes paused under load
        clock.advance(15)
        await reconciler.reconcile()
    assert target.scale_calls == []

    target.change("web", labels={})
    await reconciler.reconcile()

    assert reconciler._engines[("web", "web")].engine is engine, "the engine's history is kept"
    # HPA's default scale-up limits: +100 % or +4 replicas per 15 s, whichever is more.
    assert [c.replicas for c in target.scale_calls] == [6]
    assert reconciler.status.records["web"].outcome is Outcome.SCALED


async def test_a_pause_that_wins_the_compare_and_swap_is_honoured(
    policy_dir: Path, make_reconciler: MakeReconciler
) -> None:
    write_policy(policy_dir, "web", target=10.0)
    target = FakeTarget(service("web", 2))
    reconciler = make_reconciler(target, FakeSource({("web", "rps"): 100.0}))

    async def pause_first(state: ServiceState) -> None:
        target.before_scale = None
        target.change("web", labels={"autoscaler.paused": "true"})

    target.before_scale = pause_first
    await reconciler.run_once()

    assert target.scale_calls == [] and target.services["web"].replicas == 2
    assert reconciler.status.records["web"].outcome is Outcome.PAUSED


async def test_unreadable_pause_labels_hold_the_service_and_are_reported(
    policy_dir: Path, make_reconciler: MakeReconciler
) -> None:
    write_policy(policy_dir, "web", target=10.0)
    target = FakeTarget(service("web", 2, labels={"autoscaler.paused": "ture"}))
    reconciler = make_reconciler(target, FakeSource({("web", "rps"): 100.0}))

    await reconciler.run_once()

    assert target.scale_calls == []
    assert reconciler.labels.problems["web"] == [
        "service web: label autoscaler.paused: must be true or false, got 'ture'; held as paused until fixed"
    ]


async def test_explain_shows_the_label_source_the_pause_and_the_label_problems(
    policy_dir: Path, make_reconciler: MakeReconciler
) -> None:
    from .test_explain_and_logs import explained

    pause = {
        "autoscaler.paused": "true",
        "autoscaler.pausedBy": "ana",
        "autoscaler.pausedAt": "2026-12-01T16:00:00Z",
    }
    good = policy_labels(**pause)
    target = FakeTarget(
        service("web", 2, labels=good), service("api", 2, labels={"autoscaler.paused": "true"})
    )
    write_policy(policy_dir, "api", target=10.0)
    reconciler = make_reconciler(target, FakeSource({("web", "rps"): 100.0, ("api", "rps"): 1.0}))
    await reconciler.run_once()
    broken = dict(good, **{"autoscaler.maxReplicas": "0"})
    target.change("web", labels=broken)
    await reconciler.reconcile()

    shown = explained(reconciler, "web", "api")

    assert "(policy web from its labels, id " in shown["web"]
    assert "outcome   paused" in shown["web"]
    assert "paused    by ana, at 2026-12-01T16:00:00Z; resume: swarm-autoscaler resume web" in shown["web"]
    assert (
        "label problem: service web: label autoscaler.maxReplicas: must be at least 1, got 0 "
        "(the last valid policy from its labels stays in force)"
    ) in shown["web"]
    assert "(policy api, id " in shown["api"]
    assert "paused    by someone (not recorded: set by hand), at " in shown["api"]
    assert "or earlier (first seen by this controller)" in shown["api"]


async def test_a_label_selector_limits_which_services_may_have_label_policies(
    make_reconciler: MakeReconciler,
) -> None:
    target = FakeTarget(
        service("mine", 2, labels=policy_labels(**{"com.docker.stack.namespace": "shop"})),
        service("theirs", 2, labels=policy_labels(**{"com.docker.stack.namespace": "blog"})),
    )
    source = FakeSource({("mine", "rps"): 100.0, ("theirs", "rps"): 100.0})
    reconciler = make_reconciler(target, source, label_selector={"com.docker.stack.namespace": "shop"})

    result = await reconciler.run_once()

    assert result.services == ("mine",) and target.services["theirs"].replicas == 2


async def test_label_policies_can_be_switched_off(make_reconciler: MakeReconciler) -> None:
    target = FakeTarget(service("web", 2, labels=policy_labels()))
    reconciler = make_reconciler(target, FakeSource({("web", "rps"): 100.0}), labels=False)

    result = await reconciler.run_once()

    assert result.services == () and target.scale_calls == []


async def test_a_paused_service_gets_no_failover_action_and_its_memory_goes_with_it(
    policy_dir: Path, make_reconciler: MakeReconciler
) -> None:
    from .test_failover_and_lease_hooks import FakeFailover

    write_policy(policy_dir, "web", target=10.0)
    write_policy(policy_dir, "api", target=10.0)
    target = FakeTarget(service("web", 2, labels={"autoscaler.pausedReplicas": "1"}), service("api", 2))
    failover = FakeFailover()
    reconciler = make_reconciler(
        target, FakeSource({("web", "rps"): 1.0, ("api", "rps"): 1.0}), failover=failover
    )

    await reconciler.run_once()
    assert failover.managed == ["api"], "paused: hands off, failover actions included"
    assert reconciler._services._pause_applied == {"id-web": (1, None)}

    del target.services["web"]
    await reconciler.reconcile()
    assert reconciler._services._pause_applied == {} and reconciler._services._paused_since == {}
