"""Prometheus stopped mid-run: no scale-down, the reason in /decisions, recovery when it returns.

The controller reads a private twin of the lab Prometheus: the same image, config and
service discovery, as a Swarm service on the manager with its own host port. Stopping the
lab's own Prometheus would pull the data from under every other test session sharing the
lab; stopping the twin (``docker service scale twin=0``) exercises exactly the same path
(a real Prometheus going away) for this controller only.

The setup makes a scale-down due: 3 idle replicas, minReplicas 1. The outage starts
before the controller's start-up guard (one scale-down window) has passed, and lasts past
it; only the missing metric can then be what keeps the service at 3.
"""

from __future__ import annotations

import random
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from controller_helpers import (
    ControllerProcess,
    LabServices,
    PolicyFile,
    log_time,
    prometheus_value,
    rate_of,
    unique,
)
from docker.types import ConfigReference, Mount
from timing import wait_until

from swarm_lab import create_service
from swarm_lab.sessions import LabHandle

WINDOW = 15
MANAGER_IP = "10.77.0.11"  # node 1, where the lab runs Prometheus (docs/lab.md)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class TwinPrometheus:
    """The lab Prometheus's task template, as a second service on its own host port."""

    def __init__(self, services: LabServices) -> None:
        self.services = services
        self.name = unique("e2e-prometheus")
        self.port = random.randint(20000, 39999)  # on the manager's own network namespace
        self.url = f"http://{MANAGER_IP}:{self.port}"
        lab_spec = services.service("prometheus").attrs["Spec"]["TaskTemplate"]["ContainerSpec"]
        configs = [
            ConfigReference(c["ConfigID"], c["ConfigName"], filename=c["File"]["Name"])
            for c in lab_spec.get("Configs", [])
        ]
        mounts = [Mount(m["Target"], m["Source"], type=m["Type"]) for m in lab_spec.get("Mounts", [])]
        services.created.append(self.name)
        create_service(
            services.client,
            self.name,
            services.images["prometheus"],
            constraints=["node.role==manager"],
            host_ports={self.port: 9090},
            configs=configs,
            mounts=mounts,
        )

    def wait_ready(self, service: str) -> None:
        """Answering, and holding a reading of ``service``'s rate."""
        wait_until(
            lambda: answers(self.url) and prometheus_value(self.url, rate_of(service)) is not None,
            deadline=60,
            what=f"the twin Prometheus at {self.url} answering with {service}'s rate",
        )

    def stop(self) -> None:
        self.services.scale_by_hand(self.name, 0)
        wait_until(lambda: not answers(self.url), deadline=20, what=f"{self.url} to stop answering")

    def start(self) -> None:
        self.services.scale_by_hand(self.name, 1)


def test_prometheus_outage_holds_scale_down_and_recovers(
    lab: LabHandle, services: LabServices, tmp_path: Path
) -> None:
    name = unique("e2e-promdown")
    twin = TwinPrometheus(services)
    services.web(name, replicas=3)
    services.wait_running(name, 3)
    twin.wait_ready(name)
    PolicyFile(name, min_replicas=1, scale_down_window=WINDOW).write(tmp_path)
    controller = ControllerProcess(
        policies=tmp_path,
        docker_host=lab.manager_url,
        prometheus_url=twin.url,
        workdir=tmp_path,
        interval=1.0,
    )
    try:
        check_outage(controller, twin, name)
        restarted_at = time.time()
        down = controller.wait_action(
            name, since=restarted_at, deadline=90, to=lambda old, new: new < old, what="down (recovered)"
        )
        assert down["to"] == 1
        recovered = controller.record(name)
        assert recovered is not None and recovered["decision"]["metrics"][0]["value"] is not None
    finally:
        controller.stop()


def check_outage(controller: ControllerProcess, twin: TwinPrometheus, name: str) -> None:
    """Stop the twin once the controller has read it; no scale-down until it is back."""
    try:

        def read_once() -> dict[str, Any] | None:
            for decision in controller.events("decision", name):
                if decision["metrics"].get("requests_per_second") is not None:
                    return decision
            return None

        first = wait_until(read_once, deadline=30, what=f"a decision on {name} with a reading")
        twin.stop()
        stopped_at = time.time()
        assert not controller.events("action", name), (
            f"{name} was scaled before the outage began: the twin took too long to stop"
        )

        # The outage outlasts the start-up guard: from here on only the missing metric holds.
        guard_over = log_time(first) + WINDOW + 2
        wait_until(
            lambda: controller.events("decision", name, since=guard_over),
            deadline=WINDOW + 30,
            what=f"decisions on {name} after the start-up guard expired",
        )
        during = controller.events("decision", name, since=stopped_at + 2)
        assert during, "no decision during the outage"
        assert all("MissingMetrics" in d["limits"] and d["desired"] == 3 for d in during), [
            d["message"] for d in during if "MissingMetrics" not in d["limits"] or d["desired"] != 3
        ]
        assert not controller.events("action", name), "scaled while the metric was missing"

        record = controller.record(name)
        assert record is not None and record["decision"] is not None, record
        assert "MissingMetrics" in record["decision"]["limits"], record
        assert record["decision"]["metrics"][0]["value"] is None
        assert "prometheus" in record["decision"]["metrics"][0]["reason"].lower(), record
    finally:
        twin.start()
