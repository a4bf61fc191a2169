"""Helpers of the label and pause lab tests: labelled services, the CLIs, waiting on replicas."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
import uuid
from typing import Any

from controller_helpers import ControllerProcess, LabServices
from timing import wait_until

from swarm_lab import create_service
from swarm_lab.sessions import LabHandle

WANTS_THREE = "vector(25)"  # with averageValue 10: ceil(25 / 10) = 3 replicas
# Other test sessions may run controllers on the shared lab: each controller here governs only
# the labelled services of this session (--label-selector), and theirs never carry the label.
SESSION = uuid.uuid4().hex[:8]
SELECTOR = f"lbltest.session={SESSION}"
SELECT = ("--label-selector", SELECTOR)


def policy_labels(*, max_replicas: int = 6, query: str = WANTS_THREE) -> dict[str, str]:
    return {
        "autoscaler.enable": "true",
        "autoscaler.minReplicas": "1",
        "autoscaler.maxReplicas": str(max_replicas),
        "autoscaler.panic.enabled": "false",
        "autoscaler.metrics.load.prometheus.query": query,
        "autoscaler.metrics.load.target.averageValue": "10",
        "autoscaler.behavior.scaleDown.stabilizationWindowSeconds": "0",
        "lbltest.session": SESSION,
    }


def docker(lab: LabHandle, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "-H", lab.manager_url, *args], capture_output=True, text=True, timeout=120, check=check
    )


def autoscaler_cli(lab: LabHandle, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "autoscaler", *args, "--docker-host", lab.manager_url]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def labelled(services: LabServices, name: str, labels: dict[str, str], replicas: int = 1) -> Any:
    services.created.append(name)
    image = services.images["busybox"]
    return create_service(
        services.client, name, image, replicas=replicas, labels=labels, command=["sleep", "3600"]
    )


def spec_labels(services: LabServices, name: str) -> dict[str, str]:
    return dict(services.service(name).attrs["Spec"].get("Labels") or {})


def wait_replicas(services: LabServices, name: str, count: int, deadline: float = 60) -> None:
    wait_until(
        lambda: services.spec_replicas(name) == count, deadline=deadline, what=f"{name} at {count} replicas"
    )


def passes_go_by(controller: ControllerProcess, count: int) -> None:
    start = controller.passes()
    wait_until(lambda: controller.passes() >= start + count, deadline=60, what=f"{count} controller passes")


def metrics_text(controller: ControllerProcess) -> str:
    with urllib.request.urlopen(f"{controller.url}/metrics", timeout=5) as response:
        text: str = response.read().decode()
    return text
