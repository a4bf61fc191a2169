"""The chart on the VM lab, as a real swarm runs it (issue 10, test 6): VIP endpoints and
ingress-published ports, no values override, on nodes whose kernel has IPVS.

test_deploy_stack.py's fixtures and tests with the VM lab as ``chart_lab``: deploy.sh with
charts/values.env alone. Checked here: every service in endpoint mode vip with a VIP, the
published ports in ingress mode, Prometheus and the controller's port answering on every
node's address through the routing mesh (also on a node that runs no such task), and the
controller, running as the stack, scaling the example app under load. The leader take-over
is left to the netns lab's run of the same tests (nothing in it needs IPVS; under TCG it
would cost minutes more).

Images: built on the host side (the netns lab's manager, native speed; building inside a
TCG guest costs minutes) and moved into every VM node (vm_images). Figures (moving the
images, the stack's start) are printed; run with ``VM_CHART=1 pytest -s``.
"""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import vm_images
from test_deploy_stack import (
    ChartLab,
    Image,
    Stack,
    build_image,
    chart_values,
    scales_up_under_load,
    stack,
    test_stack_runs_with_the_endpoint_and_publish_modes_of_its_values,
    unless_busy,
)
from timing import wait_until

from swarm_lab import images as lab_images
from swarm_lab import vm_layout
from swarm_lab.vm_lab import VmLabInfo

__all__ = ["stack", "test_stack_runs_with_the_endpoint_and_publish_modes_of_its_values"]

TCG_OVERRIDE = Path(__file__).with_name("vm_stack_tcg.yml")
CONTROLLER_PORT = 18080  # published by vm_stack_tcg.yml
# TCG: container starts take seconds each, the guests answer scrapes in seconds.
PATIENCE = 4.0
pytestmark = [
    pytest.mark.timeout(2400),
    # Opt-in: on this 2-core host under TCG (opt-in run, 2026-12-01, host load 5-9) the module
    # took 26.5 min: the images 184 s and 144 s per node, the stack's start 469 s. The mode and
    # mesh tests passed; the scale test cannot pass there: the example app in the guests served
    # 137 requests in ~4 min of the 120 req/s asked, so the controller read ~0 and kept 2.
    pytest.mark.skipif(
        os.environ.get("VM_CHART") != "1",
        reason="this machine has no usable nested KVM, so the VM lab runs under TCG, where this module "
        "takes 26 min (images 144-184 s per node, stack start 469 s), beyond .ci/run's 30 min budget, "
        "and the example app serves under 1 req/s, so its scale test cannot pass: set VM_CHART=1 to run it",
    ),
]


@pytest.fixture(scope="module")
def chart_lab(vm_lab: VmLabInfo) -> ChartLab:
    """The VM lab with the chart's defaults: no values file, the nodes' own socket and netns."""
    return ChartLab(
        manager_url=vm_lab.manager_url,
        node_urls=list(vm_lab.node_urls),
        images={"python": lab_images.PYTHON, "prometheus": lab_images.PROMETHEUS},
        values_files=[],
        # The chart's own lease and loop interval, not the take-over test's 6 s / 2 s (that test
        # runs on the netns lab only): under TCG a 6 s lease lapsed and was taken back every
        # ~10 s, renewals being slower than its margin (seen).
        env={name: chart_values([], {})[name] for name in ("LEASE_SECONDS", "LOOP_INTERVAL")},
        compose_files=[TCG_OVERRIDE],
        patience=PATIENCE,
    )


@pytest.fixture(scope="module")
def image(lab: Any, chart_lab: ChartLab, tmp_path_factory: pytest.TempPathFactory) -> Image:
    """This tree's image built by the netns lab's manager, moved with the lab's Python and
    Prometheus images into every VM node that lacks them."""
    built = build_image(lab.manager_url, lab.images["python"])
    tags = [built.tag, chart_lab.images["python"], chart_lab.images["prometheus"]]
    nodes = vm_layout.nodes(len(chart_lab.node_urls))
    for moved in vm_images.move_images(lab.manager_url, tags, nodes, tmp_path_factory.mktemp("images")):
        what = ", ".join(moved.images) or "nothing (had them)"
        print(f"\nVM node {moved.node}: {what}: {moved.archive_bytes / 1e6:.0f} MB in {moved.seconds:.0f}s")
    return built


def controller_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=10) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_the_controllers_port_answers_on_every_node_through_the_mesh(stack: Stack) -> None:
    def placement() -> tuple[list[tuple[int, str]], set[str], list[str]]:
        service = stack.service("autoscaler")
        ports = [(p["PublishedPort"], p["PublishMode"]) for p in service.attrs["Endpoint"]["Ports"]]
        tasks = service.tasks(filters={"desired-state": "running"})
        with_task = {stack.client.nodes.get(t["NodeID"]).attrs["Status"]["Addr"] for t in tasks}
        return ports, with_task, [n.attrs["Status"]["Addr"] for n in stack.client.nodes.list()]

    ports, with_task, addresses = wait_until(
        unless_busy(placement), deadline=60 * PATIENCE, what="the controller's tasks and the nodes"
    )
    assert ports == [(CONTROLLER_PORT, "ingress")]
    print(f"\ncontroller tasks on {sorted(with_task)}; asked on every node: {sorted(addresses)}")
    for address in addresses:
        url = f"http://{address}:{CONTROLLER_PORT}"
        wait_until(
            lambda u=url: controller_healthy(u),
            deadline=60 * PATIENCE,
            what=f"the controller's /healthz through the ingress at {url}",
        )


def test_the_deployed_autoscaler_scales_the_example_app(image: Image, stack: Stack) -> None:
    print(f"\nimage {image.tag}: {image.size_bytes / 1e6:.0f} MB; stack up in {stack.startup_seconds:.0f}s")
    scales_up_under_load(stack, patience=PATIENCE)
