"""The loop over time: ticks, events, hot reload and stopping, driven by a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from timing import FakeClock, eventually

from autoscaler.core.observation import ServiceState
from autoscaler.reconciler.loop import Reconciler
from autoscaler.reconciler.status import DEFAULT_LIVENESS_PASSES, MIN_LIVENESS_SECONDS, ReconcilerStatus
from autoscaler.targets.swarm_events import SwarmEvent

from .fakes import FakeSource, FakeTarget, service, write_policy

MakeReconciler = Callable[..., Reconciler]
INTERVAL = 5.0
DEBOUNCE = 0.5


async def settled(reconciler: Reconciler, clock: FakeClock, passes: int) -> None:
    """Wait until pass number ``passes`` is done and the loop sleeps towards the next tick."""
    await eventually(
        lambda: reconciler.status.passes == passes and clock.waiting_until(clock.now + INTERVAL),
        what=f"pass {passes} and the sleep after it",
    )


async def stop_and_join(reconciler: Reconciler, task: asyncio.Task[None]) -> None:
    reconciler.stop()
    await asyncio.wait_for(task, timeout=5)


async def test_ticks_every_interval(
    policy_dir: Path, make_reconciler: MakeReconciler, clock: FakeClock
) -> None:
    write_policy(policy_dir, "web")
    target = FakeTarget(service("web", 1))
    reconciler = make_reconciler(target, FakeSource({("web", "rps"): 10.0}), interval=INTERVAL)
    task = asyncio.create_task(reconciler.run())

    await settled(reconciler, clock, 1)
    clock.advance(INTERVAL - 0.1)
    await asyncio.sleep(0)
    assert reconciler.status.passes == 1, "ticked before the interval elapsed"
    clock.advance(0.1)
    await eventually(lambda: reconciler.status.passes == 2, what="second pass")

    await stop_and_join(reconciler, task)


async def test_event_triggers_a_debounced_early_pass_of_that_service(
    policy_dir: Path, make_reconciler: MakeReconciler, clock: FakeClock
) -> None:
    for name in ("web", "api"):
        write_policy(policy_dir, name)
    target = FakeTarget(service("web", 1), service("api", 1))
    source = FakeSource({("web", "rps"): 10.0, ("api", "rps"): 10.0})
    reconciler = make_reconciler(target, source, interval=INTERVAL, debounce=DEBOUNCE)
    task = asyncio.create_task(reconciler.run())
    await settled(reconciler, clock, 1)

    # A burst of task events for one service...
    for action in ("die", "start", "start"):
        target.event_queue.put_nowait(SwarmEvent("task", action, "id-web", "web", clock.now))
    await eventually(lambda: clock.waiting_until(clock.now + DEBOUNCE), what="debounce timer")
    assert reconciler.status.passes == 1, "reacted before the debounce delay"
    clock.advance(DEBOUNCE)
    # ...becomes one early pass, long before the next tick, that fetches only that service.
    await eventually(lambda: reconciler.status.passes == 2, what="early pass")
    assert [r.service for r in source.fetch_calls[-1]] == ["web"]

    # A node event may move any task: it wakes a pass over every service.
    target.event_queue.put_nowait(SwarmEvent("node", "update", "node-2", None, clock.now))
    await eventually(lambda: clock.waiting_until(clock.now + DEBOUNCE), what="debounce timer")
    clock.advance(DEBOUNCE)
    await eventually(lambda: reconciler.status.passes == 3, what="pass after node event")
    assert sorted(r.service for r in source.fetch_calls[-1]) == ["api", "web"]

    await stop_and_join(reconciler, task)


async def test_broken_policy_file_keeps_the_last_good_version(
    policy_dir: Path, make_reconciler: MakeReconciler, clock: FakeClock
) -> None:
    path = write_policy(policy_dir, "web", max_replicas=3)
    target = FakeTarget(service("web", 1))
    source = FakeSource({("web", "rps"): 1000.0})
    reconciler = make_reconciler(target, source, interval=INTERVAL)
    task = asyncio.create_task(reconciler.run())
    await settled(reconciler, clock, 1)
    assert target.services["web"].replicas == 3

    path.write_text(path.read_text().replace("maxReplicas: 3", "maxReplicas: [oops"))
    target.change("web", replicas=1, running=1)  # someone scales it down meanwhile
    clock.advance(INTERVAL)
    await settled(reconciler, clock, 2)

    problems = reconciler.policies.problems
    assert len(problems) == 1 and str(path) in problems[0]
    assert reconciler.metrics.policy_load_errors._value.get() == 1
    # The last good policy still governs the service, maxReplicas 3 included.
    assert target.services["web"].replicas == 3
    assert reconciler.status.records["web"].policy.spec.max_replicas == 3

    path.write_text(path.read_text().replace("maxReplicas: [oops", "maxReplicas: 5"))
    clock.advance(INTERVAL)
    await settled(reconciler, clock, 3)
    assert reconciler.policies.problems == []
    assert reconciler.status.records["web"].policy.spec.max_replicas == 5

    await stop_and_join(reconciler, task)


async def test_stop_lets_an_in_flight_scale_finish(
    policy_dir: Path, make_reconciler: MakeReconciler, clock: FakeClock
) -> None:
    write_policy(policy_dir, "web")
    target = FakeTarget(service("web", 1))
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow_scale(state: object) -> None:
        entered.set()
        await release.wait()

    target.before_scale = slow_scale
    reconciler = make_reconciler(target, FakeSource({("web", "rps"): 50.0}), interval=INTERVAL)
    task = asyncio.create_task(reconciler.run())
    await asyncio.wait_for(entered.wait(), timeout=5)

    reconciler.stop()
    await asyncio.sleep(0)
    assert not task.done(), "stopped without waiting for the scale call in flight"
    release.set()
    await asyncio.wait_for(task, timeout=5)
    assert len(target.scale_calls) == 1 and target.list_calls == 1


async def test_event_stream_failure_is_counted_and_retried(
    policy_dir: Path, make_reconciler: MakeReconciler, clock: FakeClock
) -> None:
    write_policy(policy_dir, "web")
    target = FakeTarget(service("web", 1))
    attempts = 0

    async def broken_events():  # type: ignore[no-untyped-def]
        nonlocal attempts
        attempts += 1
        raise ConnectionError("event stream reset")
        yield  # pragma: no cover - makes this an async generator

    target.events = broken_events  # type: ignore[method-assign]
    reconciler = make_reconciler(target, FakeSource(), interval=INTERVAL)
    task = asyncio.create_task(reconciler.run())
    await settled(reconciler, clock, 1)
    await eventually(lambda: attempts == 1, what="first attempt")
    clock.advance(INTERVAL)
    await eventually(lambda: attempts == 2, what="reconnect")
    assert reconciler.metrics.target_errors.labels("events")._value.get() == 2

    await stop_and_join(reconciler, task)


async def test_liveness_fails_once_the_loop_stops_ticking(
    policy_dir: Path, make_reconciler: MakeReconciler, clock: FakeClock
) -> None:

    write_policy(policy_dir, "web")
    reconciler = make_reconciler(FakeTarget(service("web", 1)), FakeSource(), interval=INTERVAL)
    status = ReconcilerStatus(reconciler)
    await reconciler.run_once()
    allowed = max(DEFAULT_LIVENESS_PASSES * INTERVAL, MIN_LIVENESS_SECONDS)

    clock.advance(allowed)
    assert status.liveness()[0], "declared dead while still within the allowance"
    clock.advance(1)
    alive, details = status.liveness()
    assert not alive and details["seconds_since_last_pass"] == allowed + 1


async def test_a_pass_hung_on_docker_turns_health_and_readiness_red_after_three_intervals(
    policy_dir: Path, make_reconciler: MakeReconciler, clock: FakeClock
) -> None:
    # Issue 11, item 8: with the manager's dockerd SIGSTOPped no pass completed, yet both
    # probes said 200 for the whole 25 s (the old allowance was 3 intervals + 30 s).
    write_policy(policy_dir, "web")
    target = FakeTarget(service("web", 1))
    reconciler = make_reconciler(target, FakeSource(), interval=INTERVAL)
    status = ReconcilerStatus(reconciler)
    await reconciler.run_once()
    assert status.liveness()[0] and status.readiness()[0]
    hung = asyncio.Event()
    real_list = target.list_services

    async def list_services() -> list[ServiceState]:
        await hung.wait()  # a daemon that accepted the connection and never answers
        return await real_list()

    target.list_services = list_services  # type: ignore[method-assign]
    passing = asyncio.create_task(reconciler.run_once())
    clock.advance(3 * INTERVAL)
    assert status.liveness()[0]
    clock.advance(1)
    alive, details = status.liveness()
    assert not alive and details["seconds_since_last_pass"] == 3 * INTERVAL + 1
    ready, ready_details = status.readiness()
    assert not ready and ready_details["checks"]["pass_recent"] is False
    hung.set()  # the daemon resumes: the pass completes and both turn green again
    await passing
    assert status.liveness()[0] and status.readiness()[1]["checks"]["pass_recent"]
