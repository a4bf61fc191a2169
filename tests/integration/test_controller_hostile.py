"""The real controller against the lab when its surroundings misbehave (issue 11, items 7-9).

* A hung Docker daemon (the manager's dockerd SIGSTOPped): /healthz must turn 503 so
  Swarm's HEALTHCHECK replaces a stuck controller, and turn 200 again once it resumes.
* SIGTERM while Prometheus hangs: the process must end by itself inside Docker's stop
  grace (10 s, then SIGKILL), with exit status 1 because the pass in flight was abandoned.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from controller_helpers import ControllerProcess, LabServices, PolicyFile, unique, wait_for

from autoscaler.reconciler.status import DEFAULT_LIVENESS_PASSES, MIN_LIVENESS_SECONDS
from swarm_lab.sessions import LabHandle

INTERVAL = 1.0
MANAGER = 1  # the lab's node 1 is its only manager (docs/lab.md)
DOCKER_STOP_GRACE = 10.0  # docker stop / service update: SIGTERM, then SIGKILL this much later


class SilentServer:
    """A loopback TCP server that accepts connections and never answers: a hung Prometheus."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(connection)

    def close(self) -> None:
        self.sock.close()
        for connection in self.connections:
            connection.close()


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


def test_sigterm_with_prometheus_hanging_ends_inside_the_stop_grace_with_status_1(
    lab: LabHandle, tmp_path: Path
) -> None:
    silent = SilentServer()
    services = LabServices(lab.manager_url, lab.images)
    policies = tmp_path / "policies"
    policies.mkdir()
    name = unique("hostile-term")
    try:
        services.web(name, 1)
        PolicyFile(name).write(policies)
        process = ControllerProcess(
            policies=policies,
            docker_host=lab.manager_url,
            prometheus_url=silent.url,
            workdir=tmp_path,
            interval=INTERVAL,
        )
        try:
            # The first pass ended (5 s per attempt, 3 attempts); wait for the next one to be
            # waiting on the silent Prometheus.
            seen = len(silent.connections)
            wait_for(lambda: len(silent.connections) > seen, deadline=30, what="a pass querying Prometheus")
            process.process.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            try:
                code = process.process.wait(timeout=DOCKER_STOP_GRACE)
            except subprocess.TimeoutExpired:
                process.process.kill()  # what Docker would do
                code = process.process.wait()
            took = time.monotonic() - sent
            abandoned = [e["what"] for e in process.events("abandoned")]
        finally:
            process.stop()
        print(f"SIGTERM with Prometheus hanging: exited {code} after {took:.1f} s; abandoned: {abandoned}")
        assert code == 1, "killed at Docker's stop grace, or exit 0 although the pass was abandoned"
        assert "the in-flight pass" in abandoned
    finally:
        services.remove_all()
        silent.close()
