"""Policies in service labels, and pause/resume, through the real lab Swarm and Prometheus.

One ``swarm-autoscaler run`` (interval 1 s, no policy files) serves the module; every test
deploys its own uniquely named services or stack and removes them. The metric is a constant
PromQL expression (``vector(25)``, per-replica target 10: the policy wants 3 replicas), so
what moves the replica count is the labels, not the load. Latencies are printed (``-s``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from controller_helpers import ControllerProcess, LabServices, log_time, unique
from label_helpers import (
    SELECT,
    autoscaler_cli,
    docker,
    labelled,
    metrics_text,
    passes_go_by,
    policy_labels,
    spec_labels,
    wait_replicas,
)
from timing import wait_until

from swarm_lab.sessions import LabHandle

INTERVAL = 1.0


@pytest.fixture(scope="module")
def controller(lab: LabHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    process = ControllerProcess(
        policies=tmp_path_factory.mktemp("no-policies"),
        docker_host=lab.manager_url,
        prometheus_url=lab.prometheus_url,
        workdir=tmp_path_factory.mktemp("controller"),
        interval=INTERVAL,
        extra=SELECT,
    )
    try:
        yield process
    finally:
        process.stop()


def test_a_stack_deployed_with_labels_is_scaled(
    lab: LabHandle, controller: ControllerProcess, tmp_path: Path, services: LabServices
) -> None:
    stack = unique("lbl-stack")
    labels = "".join(f"        - {k}={v}\n" for k, v in policy_labels().items())
    stack_file = tmp_path / "stack.yml"
    stack_file.write_text(
        'version: "3.8"\n'
        "services:\n"
        "  web:\n"
        f"    image: {services.images['busybox']}\n"
        '    command: ["sleep", "3600"]\n'
        "    deploy:\n"
        "      replicas: 1\n"
        "      labels:\n"
        f"{labels}"
    )
    checked = subprocess.run(
        [sys.executable, "-m", "autoscaler", "validate", "--compose", str(stack_file), "--stack", stack],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith(f"{stack}_web: labels, replicas 1..6, metrics: load")
    docker(lab, "stack", "deploy", "--detach=true", "-c", str(stack_file), stack)
    name = f"{stack}_web"
    try:
        wait_replicas(services, name, 3)
        record = wait_until(lambda: controller.record(name), deadline=20, what=f"a record of {name}")
        assert record["policy"] == name and record["policy_source"] == "labels"
        command = [sys.executable, "-m", "autoscaler", "validate", "--swarm", "--output", "json"]
        swarm = subprocess.run(
            [*command, "--docker-host", lab.manager_url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        # Other sessions' services share the lab: look at ours only.
        checked = {s["service"]: s for s in json.loads(swarm.stdout)["services"]}
        assert checked[name] == {"service": name, "where": "swarm", "valid": True, "problems": []}
    finally:
        docker(lab, "stack", "rm", stack, check=False)
        wait_until(
            lambda: not services.client.services.list(filters={"name": name}),
            deadline=60,
            what=f"stack {stack} removed",
        )


def test_labels_edited_live_take_effect_and_broken_ones_keep_the_last_good_policy(
    lab: LabHandle, controller: ControllerProcess, services: LabServices
) -> None:
    name = unique("lbl-live")
    labelled(services, name, policy_labels(max_replicas=6))
    wait_replicas(services, name, 3)

    edited_at = time.time()
    docker(lab, "service", "update", "--detach", "--label-add", "autoscaler.maxReplicas=2", name)
    done_at = time.time()
    wait_replicas(services, name, 2)
    loaded = wait_until(
        lambda: controller.events("label_policy_loaded", name, since=edited_at),
        deadline=20,
        what="the changed policy logged",
    )[0]
    action = controller.wait_action(name, since=edited_at, deadline=20, to=lambda f, t: t == 2, what="to 2")
    in_force, scaled = log_time(loaded) - done_at, log_time(action) - done_at
    print(
        f"\nlabel edit -> policy in force {in_force:.2f}s, -> scaled {scaled:.2f}s after "
        f"`docker service update` returned ({done_at - edited_at:.2f}s), interval {INTERVAL:g}s"
    )

    broken_at = time.time()
    docker(lab, "service", "update", "--detach", "--label-add", "autoscaler.maxReplica=9", name)
    expected = (
        f"service {name}: label autoscaler.maxReplica: unknown field; did you mean autoscaler.maxReplicas?"
        " (the last valid policy from its labels stays in force)"
    )
    wait_until(
        lambda: controller.decisions()["label_problems"].get(name) == [expected],
        deadline=20,
        what="the label problem in /decisions",
    )
    passes_go_by(controller, 3)
    logged = [e for e in controller.events("label_problem", name, since=broken_at)]
    assert len(logged) >= 3, "reported on every pass"
    assert all(e["message"] == expected for e in logged)
    assert f'autoscaler_label_policy_problems{{service="{name}"}} 1.0' in metrics_text(controller)
    record = controller.record(name)
    assert record is not None and record["max_replicas"] == 2, "the last good policy is still in force"
    assert services.spec_replicas(name) == 2

    docker(lab, "service", "update", "--detach", "--label-rm", "autoscaler.maxReplica", name)
    wait_until(
        lambda: name not in controller.decisions()["label_problems"], deadline=20, what="problem cleared"
    )
    assert f'autoscaler_label_policy_problems{{service="{name}"}}' not in metrics_text(controller)


def test_pause_paused_replicas_and_resume_through_the_swarm(
    lab: LabHandle, controller: ControllerProcess, services: LabServices
) -> None:
    name = unique("lbl-pause")
    labelled(services, name, policy_labels())
    wait_replicas(services, name, 3)

    autoscaler_cli(lab, "pause", name, "--replicas", "1", "--by", "lab-test")
    wait_replicas(services, name, 1)
    record = wait_until(
        lambda: (r := controller.record(name)) and r["outcome"] == "paused" and r, deadline=20, what="paused"
    )
    assert record["paused"]["by"] == "lab-test" and record["paused"]["replicas"] == 1
    assert "unpaused, the policy would want 3" in record["reason"]
    assert f'autoscaler_paused{{service="{name}"}} 1.0' in metrics_text(controller)

    services.scale_by_hand(name, 2)  # pausedReplicas applies once: a hand change while paused stays
    wait_replicas(services, name, 2)
    passes_go_by(controller, 3)
    assert services.spec_replicas(name) == 2

    autoscaler_cli(lab, "pause", name)  # plain pause: count left as it is
    services.scale_by_hand(name, 1)
    wait_replicas(services, name, 1)
    passes_go_by(controller, 3)
    assert services.spec_replicas(name) == 1
    assert not any(k.startswith("autoscaler.pausedReplicas") for k in spec_labels(services, name))

    resumed_at = time.time()
    autoscaler_cli(lab, "resume", name)
    wait_replicas(services, name, 3)
    assert not any(k.startswith("autoscaler.paused") for k in spec_labels(services, name))
    assert set(policy_labels()) <= set(spec_labels(services, name)), "other labels kept"
    # The controller logs its scale after Swarm has the new count: wait for the line, then let a
    # few passes go by so a catch-up burst, if there were one, would be in the log too.
    controller.wait_action(name, since=resumed_at, deadline=30, to=lambda _f, _t: True, what="after resume")
    passes_go_by(controller, 3)
    ups = [e for e in controller.events("action", name, since=resumed_at) if e.get("action") == "scaled"]
    # No catch-up burst: HPA's default limits (+100 % or +4 per 15 s) allow 1 -> 3 at once.
    assert [(e["from"], e["to"]) for e in ups] == [(1, 3)]
    assert f'autoscaler_paused{{service="{name}"}} 0.0' in metrics_text(controller)


def test_a_concurrent_env_add_during_pause_loses_nothing(lab: LabHandle, services: LabServices) -> None:
    name = unique("lbl-race")
    labelled(services, name, {"keep": "me"})
    rounds = 6
    retried_env = 0
    for index in range(rounds):
        errors: list[str] = []

        def env_add(key: str = f"ROUND_{index}", errors: list[str] = errors) -> None:
            nonlocal retried_env
            while True:  # the docker CLI refuses a lost race ("out of sequence"): again, as a person would
                done = docker(
                    lab, "service", "update", "--detach", "--env-add", f"{key}=1", name, check=False
                )
                if done.returncode == 0:
                    return
                if "out of sequence" not in done.stderr:
                    errors.append(done.stderr)
                    return
                retried_env += 1

        other = threading.Thread(target=env_add)
        other.start()
        if index % 2:
            autoscaler_cli(lab, "pause", name, "--replicas", str(index))
        else:
            autoscaler_cli(lab, "resume", name)
        other.join(timeout=120)
        assert errors == []
        spec = services.service(name).attrs["Spec"]
        env = spec["TaskTemplate"]["ContainerSpec"].get("Env") or []
        assert all(f"ROUND_{i}=1" in env for i in range(index + 1)), env
        labels = spec.get("Labels") or {}
        assert labels.get("keep") == "me"
        if index % 2:
            assert labels.get("autoscaler.pausedReplicas") == str(index)
        else:
            assert "autoscaler.paused" not in labels
    print(f"\n{rounds} pause/resume + env-add races: nothing lost ({retried_env} env-add retries)")


def test_pause_that_loses_the_race_to_an_env_add_writes_on_top_of_it(
    lab: LabHandle, services: LabServices
) -> None:
    # Deterministic version of the race above: the env-add lands between pause's read of the
    # spec and its write, so Swarm must refuse the first write and pause must redo it on top.
    import asyncio
    from datetime import UTC, datetime

    from autoscaler.reconciler import pausing
    from autoscaler.targets.docker_api import DockerApi

    name = unique("lbl-cas")
    labelled(services, name, {"keep": "me"})
    raced: list[str] = []

    class RacingWriter:
        def __init__(self, target: DockerApi) -> None:
            self.target = target

        async def update_spec(self, service: str, version: int | None, mutate: Any) -> dict[str, Any]:
            def mutate_then_race(spec: dict[str, Any]) -> None:
                mutate(spec)
                if not raced:  # once: someone else's update between our read and our write
                    docker(lab, "service", "update", "--detach", "--env-add", "RACED=1", service)
                    raced.append(service)

            written: dict[str, Any] = await self.target.update_spec(service, version, mutate_then_race)
            return written

    async def pause_it() -> pausing.LabelWrite:
        target = DockerApi(lab.manager_url)
        try:
            return await pausing.pause(
                RacingWriter(target), name, by="lab-test", at=datetime.now(UTC), replicas=0
            )
        finally:
            await target.close()

    written = asyncio.run(pause_it())

    assert raced == [name] and written.attempts == 2, "Swarm refused the write that lost the race"
    spec = services.service(name).attrs["Spec"]
    assert "RACED=1" in (spec["TaskTemplate"]["ContainerSpec"].get("Env") or []), "the env-add survived"
    labels = spec.get("Labels") or {}
    assert (
        labels["keep"] == "me"
        and labels["autoscaler.pausedReplicas"] == "0"
        and labels["autoscaler.paused"] == "true"
    )
