"""Rate limits survive a restart (issue 11, item 7).

With ``scaleUp.policies: [{type: Replicas, value: 1, periodSeconds: 10}]`` a SIGKILL after
the second step and a restart gave 3 -> 4, then 4 -> 5 only 2.2 s later: the new process
started with no scale events. Each scale now writes the events its periods still count to
a service label in the same versioned update; a new engine reads them back.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from timing import FakeClock

from autoscaler.observability.metrics import ControllerMetrics
from autoscaler.policy_sources.loader import PolicyStore
from autoscaler.reconciler import scale_record
from autoscaler.reconciler.loop import Reconciler
from autoscaler.reconciler.records import Outcome

from .fakes import FakeSource, FakeTarget, service

MakeReconciler = Callable[..., Reconciler]
PERIOD = 10


def write_stepwise_policy(policy_dir: Path) -> None:
    (policy_dir / "web.yaml").write_text(
        "apiVersion: autoscaler.swarm/v1\nkind: ScalingPolicy\nmetadata:\n  name: web\n"
        "spec:\n  service: web\n  minReplicas: 1\n  maxReplicas: 10\n"
        "  panic:\n    enabled: false\n"
        "  behavior:\n    scaleUp:\n      policies:\n"
        f"        - {{type: Replicas, value: 1, periodSeconds: {PERIOD}}}\n"
        "  metrics:\n    - name: rps\n      prometheus:\n"
        '        query: sum(rate(requests_total{service="{{ service }}"}[1m]))\n'
        "      target:\n        averageValue: 10\n"
    )


async def test_a_restarted_controller_goes_on_counting_the_previous_ones_steps(
    policy_dir: Path, make_reconciler: MakeReconciler, clock: FakeClock
) -> None:
    write_stepwise_policy(policy_dir)
    target = FakeTarget(service("web", 2))
    source = FakeSource({("web", "rps"): 1000.0})  # wants 10: one step per period
    first = make_reconciler(target, source)
    await first.run_once()
    clock.advance(PERIOD + 0.5)
    await first.run_once()
    assert [c.replicas for c in target.scale_calls] == [3, 4]
    label = json.loads(target.services["web"].labels[scale_record.LABEL])
    assert [n for _, n in label["up"]] == [1, 1] and label["down"] == []

    clock.advance(2.2)  # the SIGKILL and the restart of the run
    # A new process: no engine, no memory (its own metrics registry, as a new process has).
    second = Reconciler(
        target=target,
        sources={"prometheus": source},
        policies=PolicyStore([policy_dir]),
        metrics=ControllerMetrics(CollectorRegistry()),
        clock=clock,
        sleep=clock.sleep,
    )
    await second.run_once()
    record = second.status.records["web"]
    assert record.outcome is Outcome.UNCHANGED and record.decision is not None
    assert "ScaleUpLimit" in record.decision.limits
    assert [c.replicas for c in target.scale_calls] == [3, 4]

    clock.advance(PERIOD - 2.2 + 0.5)  # the second step leaves its period
    await second.run_once()
    assert [c.replicas for c in target.scale_calls] == [3, 4, 5]


async def test_without_the_label_the_specs_last_change_counts(
    policy_dir: Path, make_reconciler: MakeReconciler, clock: FakeClock
) -> None:
    # A stack deploy rewrote the labels, or a person scaled it: PreviousSpec -> Spec at UpdatedAt.
    write_stepwise_policy(policy_dir)
    changed = dataclasses.replace(service("web", 4), previous_replicas=3, updated_at=clock() - 1)
    target = FakeTarget(changed)
    reconciler = make_reconciler(target, FakeSource({("web", "rps"): 1000.0}))
    await reconciler.run_once()
    assert target.scale_calls == []
    clock.advance(PERIOD)
    await reconciler.run_once()
    assert [c.replicas for c in target.scale_calls] == [5]


@pytest.mark.parametrize(
    "label",
    [
        "not json",
        '{"up": [[1e999, 1]]}',
        '{"up": [[1, true]]}',
        '{"up": "x"}',
        '{"up": [], "extra": 1}',
        json.dumps({"up": [[1, 1]] * 61}),
        "x" * 5000,
    ],
    ids=["not-json", "infinite-time", "bool-replicas", "not-a-list", "extra-key", "too-many", "too-long"],
)
async def test_an_unreadable_label_is_ignored_with_a_warning(
    policy_dir: Path,
    make_reconciler: MakeReconciler,
    clock: FakeClock,
    label: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    write_stepwise_policy(policy_dir)
    target = FakeTarget(service("web", 2, labels={scale_record.LABEL: label}))
    reconciler = make_reconciler(target, FakeSource({("web", "rps"): 1000.0}))
    await reconciler.run_once()
    assert [c.replicas for c in target.scale_calls] == [3]
    warnings = [r.getMessage() for r in caplog.records if "is unreadable" in r.getMessage()]
    assert len(warnings) == 1 and len(warnings[0]) < 300


def test_a_step_from_the_future_counts_as_now() -> None:
    # A label written on a node whose clock ran ahead must not hold scaling past a period.
    from autoscaler.core.engine import Engine
    from autoscaler.core.policy import PolicySpec

    spec = PolicySpec.model_validate(
        {
            "service": "web",
            "maxReplicas": 10,
            "metrics": [{"name": "rps", "ipvs": {"counter": "activeConnections"}, "target": {"value": 1}}],
        }
    )
    engine = Engine(spec, now=1000.0, current=2)
    engine.restore_scale_history([(5000.0, 1)], [], now=1000.0)
    assert engine.scale_history(1000.0) == ([(1000.0, 1)], [])
    assert engine.scale_history(1000.0 + 16) == ([], [])  # HPA's default scale-up period is 15 s
