"""The ``lab`` fixture: the real multi-node Swarm + Prometheus every integration test runs against,
and ``services``: what a test creates on it, removed after the test.

If the lab is not up, the session brings it up (tens of seconds; see docs/lab.md); the last
test session to finish takes down a lab that a test session started (not one started by
hand). Every test in this directory is marked ``integration``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from controller_helpers import LabServices

from swarm_lab import LabError, sessions, vm_sessions
from swarm_lab.sessions import LabHandle
from swarm_lab.vm_lab import VmLabInfo

HERE = Path(__file__).parent
VM_NODES = 2


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def lab() -> Iterator[LabHandle]:
    try:
        info, _ = sessions.acquire(node_count=3)
    except LabError as exc:
        pytest.fail(f"the lab could not be brought up: {exc}", pytrace=False)
    try:
        yield LabHandle(info)
    finally:
        sessions.release()


@pytest.fixture
def services(lab: LabHandle) -> Iterator[LabServices]:
    """Creates the test's services on the lab (``services.web(...)``) and removes them after."""
    created = LabServices(lab.manager_url, lab.images)
    try:
        yield created
    finally:
        created.remove_all()


@pytest.fixture(scope="session")
def vm_lab() -> Iterator[VmLabInfo]:
    """The VM lab (QEMU nodes with a real kernel: IPVS), booted once per session if not up.

    Two nodes, as ``.ci/run`` brings it up: the cross-node walk-through and the failover
    need a second node; the single-node tests use node 1 (the manager) and run on either."""
    if os.geteuid() != 0:
        pytest.skip("the VM lab needs root (taps, a bridge, QEMU): run the tests as root")
    try:
        info, _ = vm_sessions.acquire(node_count=VM_NODES)
    except LabError as exc:
        pytest.fail(f"the VM lab could not be brought up: {exc}", pytrace=False)
    try:
        yield info
    finally:
        vm_sessions.release()
