"""The real controller against the lab when its surroundings misbehave (issue 11, items 7-9).

* A hung Docker daemon (the manager's dockerd SIGSTOPped): /healthz must turn 503 so
  Swarm's HEALTHCHECK replaces a stuck controller, and turn 200 again once it resumes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from controller_helpers import ControllerProcess, PolicyFile, unique, wait_for

from autoscaler.reconciler.status import DEFAULT_LIVENESS_PASSES, MIN_LIVENESS_SECONDS
from swarm_lab.sessions import LabHandle

INTERVAL = 1.0
MANAGER = 1  # the lab's node 1 is its only manager (docs/lab.md)


@pytest.fixture
def controller(lab: LabHandle, tmp_path: Path) -> Iterator[ControllerProcess]:
    policies = tmp_path / "policies"
    policies.mkdir()
    PolicyFile(unique("hostile-none")).write(policies)  # governs nothing: the passes are what count
    process = ControllerProcess(
        policies=policies,
        docker_host=lab.manager_url,
        prometheus_url=lab.prometheus_url,
        workdir=tmp_path,
        interval=INTERVAL,
    )
    try:
        yield process
    finally:
        process.stop()


def health(controller: ControllerProcess) -> dict[str, object] | None:
    return controller._get("/healthz")


def test_a_hung_docker_daemon_turns_healthz_red_and_resuming_turns_it_green(
    lab: LabHandle, controller: ControllerProcess
) -> None:
    allowed = max(DEFAULT_LIVENESS_PASSES * INTERVAL, MIN_LIVENESS_SECONDS)
    wait_for(lambda: (h := health(controller)) and h["ok"], deadline=20, what="a healthy controller")
    with lab.daemon_paused(MANAGER):
        paused_at = time.monotonic()
        red = wait_for(
            lambda: (h := health(controller)) and h["ok"] is False and h,
            deadline=allowed + 20,
            what="/healthz 503 while the manager's dockerd is stopped",
        )
        red_after = time.monotonic() - paused_at
        ready = controller._get("/readyz")
    print(f"hung daemon: /healthz unhealthy {red_after:.1f} s after SIGSTOP (allowed {allowed:g} s)")
    assert float(str(red["seconds_since_last_pass"])) > allowed
    assert ready is not None and ready["ok"] is False and ready["checks"]["pass_recent"] is False
    passes = controller.passes()
    wait_for(
        lambda: (h := health(controller)) and h["ok"] and int(str(h["passes"])) > passes,
        deadline=30,
        what="/healthz 200 again once dockerd resumed",
    )
