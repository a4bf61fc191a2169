"""The controller end to end on the lab: real Swarm, real Prometheus, real HTTP load.

One ``swarm-autoscaler run`` (interval 1 s) serves every test in this module; each test
creates its own uniquely named services and policy file and removes both. What the
controller did is read from its own JSON log (each ``decision`` and ``action`` line carries
its timestamp) and from ``/decisions``; nothing here sleeps to synchronise.

"Within two evaluations" (scale-up): let T be the first instant at which Prometheus,
evaluating the policy's own query every 0.1 s, puts the rate past the scale-up threshold
(per replica above the target and ``|1 - value / (running x averageValue)| > tolerance``,
as the engine computes it). The controller must scale up at its first or second decision
logged from T (less one 0.1 s step: the query that first saw it may precede the step that
caught it). One decision of slack because a sample stamped T is written a little after T
(the scrape takes time): the first pass after T may just miss it, the second cannot.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from controller_helpers import (
    ControllerProcess,
    LabServices,
    PolicyFile,
    log_time,
    prometheus_series,
    rate_of,
    unique,
)
from docker.types import ServiceMode
from timing import wait_until

from autoscaler.targets.swarm import parse_timestamp
from swarm_lab.sessions import LabHandle

INTERVAL = 1.0
SERIES_STEP = 0.1  # seconds between the evaluations that locate the threshold crossing


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("policies")


@pytest.fixture(scope="module")
def controller(
    lab: LabHandle, policy_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControllerProcess]:
    process = ControllerProcess(
        policies=policy_dir,
        docker_host=lab.manager_url,
        prometheus_url=lab.prometheus_url,
        workdir=tmp_path_factory.mktemp("controller"),
        interval=INTERVAL,
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def services(services: LabServices, policy_dir: Path) -> Iterator[LabServices]:
    """conftest's ``services``; the policy files of what it created are deleted before the services."""
    try:
        yield services
    finally:
        for name in services.created:
            (policy_dir / f"{name}.yaml").unlink(missing_ok=True)


def decisions_between(
    controller: ControllerProcess, service: str, start: float, end: float
) -> list[dict[str, Any]]:
    return [d for d in controller.events("decision", service, since=start) if log_time(d) <= end]


def measured(record: dict[str, Any] | None) -> float | None:
    if not record or not record.get("decision"):
        return None
    value = record["decision"]["metrics"][0]["value"]
    return None if value is None else float(value)


def test_scale_up_within_two_evaluations_of_the_rate_crossing_the_threshold(
    lab: LabHandle, controller: ControllerProcess, policy_dir: Path, services: LabServices
) -> None:
    name = unique("e2e-up")
    policy = PolicyFile(name, min_replicas=1, per_replica_rps=10)
    services.web(name, replicas=1)
    services.wait_running(name, 1)
    policy.write(policy_dir)
    wait_until(
        lambda: measured(controller.record(name)) is not None,
        deadline=30,
        what=f"a decision on {name} with a reading",
    )

    load_started = time.time()  # the controller logs with this clock (same host)
    services.load(name, rps=40)
    action = controller.wait_action(
        name, since=load_started, deadline=90, to=lambda old, new: new > old, what="up"
    )
    acted_at = log_time(action)

    series = prometheus_series(
        lab.prometheus_url, rate_of(name), load_started - 2, acted_at + SERIES_STEP, SERIES_STEP
    )
    crossed = [t for t, value in series if policy.scales_up_at(value, running=1)]
    assert crossed, f"Prometheus never put {name}'s rate above the threshold before the scale-up: {series}"
    crossed_at = crossed[0]
    after_crossing = decisions_between(controller, name, crossed_at - SERIES_STEP, acted_at)
    assert 1 <= len(after_crossing) <= 2, (
        f"scaled up at decision #{len(after_crossing)} after the rate crossed the threshold at "
        f"{crossed_at:.3f} (action at {acted_at:.3f}): {[d['message'] for d in after_crossing]}"
    )
    assert after_crossing[-1]["desired"] == action["to"]
    print(
        f"\n{name}: load start -> scale call {acted_at - load_started:.2f} s; Prometheus crossing "
        f"-> scale call {acted_at - crossed_at:.2f} s ({len(after_crossing)} evaluation(s), interval "
        f"{INTERVAL:g} s)"
    )


def test_scale_down_only_after_the_stabilization_window(
    lab: LabHandle, controller: ControllerProcess, policy_dir: Path, services: LabServices
) -> None:
    name = unique("e2e-down")
    window = 12
    policy = PolicyFile(name, min_replicas=1, per_replica_rps=10, scale_down_window=window)
    services.web(name, replicas=3)
    load = services.load(name, rps=30)
    services.wait_running(name, 3)
    policy.write(policy_dir)

    def steady_at_three() -> bool:
        record = controller.record(name)
        value = measured(record)
        return record is not None and value is not None and value > 25 and record["current"] == 3

    wait_until(steady_at_three, deadline=60, what=f"{name} steady at 3 replicas under 30 req/s")

    services.remove(load)
    load_stopped = time.time()
    down = controller.wait_action(
        name, since=load_stopped, deadline=window + 45, to=lambda old, new: new < old, what="down"
    )
    down_at = log_time(down)

    history = decisions_between(controller, name, 0, down_at)
    # A decision neither held by the window nor blind (missing metric) recommended keeping 3.
    high = [d for d in history[:-1] if not {"ScaleDownStabilized", "MissingMetrics"} & set(d["limits"])]
    assert high, f"no decision on {name} before the scale-down recommended keeping 3"
    last_high_at = log_time(high[-1])
    inside = [d for d in history[:-1] if log_time(d) > last_high_at]
    assert inside, "the scale-down came at the first lower recommendation: no stabilization at all"
    stabilized = [d for d in inside if "ScaleDownStabilized" in d["limits"]]
    assert stabilized, [d["message"] for d in inside]
    assert all(d in stabilized or "MissingMetrics" in d["limits"] for d in inside), [
        d["message"] for d in inside if d not in stabilized
    ]
    assert all(d["desired"] == d["current"] for d in inside), "a held decision still moved the service"
    # The decision's own clock precedes its log line by a few ms, on both ends.
    assert down_at - last_high_at >= window - 0.5, (
        f"scaled down {down_at - last_high_at:.2f} s after the last recommendation of 3, "
        f"inside the {window} s window"
    )
    print(f"\n{name}: scale-down {down_at - last_high_at:.2f} s after the last high recommendation")


def test_manual_scale_is_respected_and_restarts_the_window(
    lab: LabHandle, controller: ControllerProcess, policy_dir: Path, services: LabServices
) -> None:
    name = unique("e2e-manual")
    window = 10
    services.web(name, replicas=1)
    services.wait_running(name, 1)
    PolicyFile(name, min_replicas=1, scale_down_window=window).write(policy_dir)
    wait_until(lambda: measured(controller.record(name)) is not None, deadline=30, what=f"{name} governed")

    changed = time.time()
    services.scale_by_hand(name, 3)
    updated_at = parse_timestamp(services.service(name).attrs["UpdatedAt"])

    def noticed() -> dict[str, Any] | None:
        for decision in controller.events("decision", name, since=changed):
            if "scaled out of band from 1 to 3" in decision["message"]:
                return decision
        return None

    seen = wait_until(noticed, deadline=20, what=f"the controller noticing {name} scaled by hand")
    down = controller.wait_action(
        name, since=changed, deadline=window + 40, to=lambda old, new: new < old, what="back down"
    )
    assert down["from"] == 3 and down["to"] == 1
    down_at = log_time(down)
    assert down_at >= updated_at + window - 0.5, (
        f"scaled down {down_at - updated_at:.2f} s after the manual change, inside the {window} s window"
    )
    inside = decisions_between(controller, name, log_time(seen), down_at)[:-1]
    assert inside and all("ScaleDownStabilized" in d["limits"] for d in inside), [
        d["message"] for d in inside
    ]


def test_recreated_service_gets_a_fresh_engine_and_is_still_scaled(
    lab: LabHandle, controller: ControllerProcess, policy_dir: Path, services: LabServices
) -> None:
    name = unique("e2e-recreate")
    first_id = services.web(name, replicas=2).id
    PolicyFile(name, min_replicas=2).write(policy_dir)
    wait_until(
        lambda: (r := controller.record(name)) is not None and r["service_id"] == first_id,
        deadline=30,
        what=f"{name} governed",
    )

    services.remove(name)
    recreated = time.time()
    second_id = services.web(name, replicas=1).id
    assert second_id != first_id

    action = controller.wait_action(
        name, since=recreated, deadline=45, to=lambda old, new: (old, new) == (1, 2), what="1 -> 2"
    )
    record = wait_until(
        lambda: (r := controller.record(name)) is not None and r["service_id"] == second_id and r,
        deadline=20,
        what=f"/decisions showing {name}'s new ID",
    )
    assert record["error"] is None
    scaling = [d for d in controller.events("decision", name, since=recreated) if d["desired"] == 2]
    assert scaling and log_time(scaling[0]) <= log_time(action)
    # An engine carried over from the old service would read 2 -> 1 as someone else's doing.
    assert "out of band" not in scaling[0]["message"], scaling[0]["message"]
    assert "TooFewReplicas" in scaling[0]["limits"]
    services.wait_running(name, 2)


def test_broken_policy_keeps_the_last_good_one_until_fixed(
    lab: LabHandle, controller: ControllerProcess, policy_dir: Path, services: LabServices
) -> None:
    name = unique("e2e-broken")
    good = PolicyFile(name, min_replicas=2)
    services.web(name, replicas=2)
    path = good.write(policy_dir)
    wait_until(lambda: controller.record(name) is not None, deadline=30, what=f"{name} governed")

    broken_at = time.time()
    scratch = path.with_suffix(".tmp")
    scratch.write_text(good.yaml().replace("maxReplicas: 6", "maxReplicas: six"))
    scratch.replace(path)

    def reported() -> list[str]:
        return [p for p in controller.decisions()["policy_problems"] if str(path) in p]

    problems = wait_until(reported, deadline=20, what=f"/decisions reporting the broken {path}")
    assert "maxReplicas" in problems[0], problems
    logged = [e for e in controller.events("policy_error", since=broken_at) if str(path) in e["message"]]
    assert logged, f"the broken {path} was not logged"

    # Still scaling by the last good version (minReplicas 2) while the file is broken.
    scaled_by_hand = time.time()
    services.scale_by_hand(name, 1)
    controller.wait_action(
        name, since=scaled_by_hand, deadline=30, to=lambda old, new: (old, new) == (1, 2), what="1 -> 2"
    )
    assert reported(), "the problem vanished from /decisions while the file is still broken"

    fixed_at = time.time()
    PolicyFile(name, min_replicas=3).write(policy_dir)
    controller.wait_action(
        name, since=fixed_at, deadline=30, to=lambda old, new: (old, new) == (2, 3), what="2 -> 3"
    )
    assert not reported(), "the fixed file is still reported broken"
    assert controller.events("policy_ok", since=fixed_at), "the fix was not logged"


def test_global_and_ungoverned_services_are_never_touched(
    lab: LabHandle, controller: ControllerProcess, policy_dir: Path, services: LabServices
) -> None:
    global_name = unique("e2e-global")
    plain_name = unique("e2e-plain")
    services.created.append(global_name)
    services.client.services.create(
        services.images["busybox"],
        name=global_name,
        command=["sleep", "3600"],
        mode=ServiceMode("global"),
        labels={"e2e": "never-touched"},
    )
    services.web(plain_name, replicas=1)
    # A policy that would scale either one (minReplicas 2), if it could.
    PolicyFile(global_name, min_replicas=2).write(policy_dir)
    versions = {n: services.service(n).attrs["Version"]["Index"] for n in (global_name, plain_name)}

    record = wait_until(lambda: controller.record(global_name), deadline=30, what=f"{global_name} reached")
    assert record["outcome"] == "skipped" and "global" in record["reason"], record
    passes = controller.passes()
    wait_until(lambda: controller.passes() >= passes + 3, deadline=30, what="three more passes")

    assert controller.record(plain_name) is None
    for name in (global_name, plain_name):
        assert services.service(name).attrs["Version"]["Index"] == versions[name], f"{name} was updated"
        assert not controller.events("action", name), f"the controller acted on {name}"
