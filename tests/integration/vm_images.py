"""Images on the VM lab's nodes without a registry: built on the host side, moved by save | load.

Building inside a TCG guest costs minutes, so images are built by an engine on the host side
(the netns lab's manager, native speed) and moved into every VM node with ``docker save |
docker -H tcp://NODE:2375 load``. Idempotent: a node that has every image is left alone, and
a node that ``node-up`` booted anew (its engine lived in RAM) gets them again.

Room: a node's Docker data lives in the guest's rootfs, the initramfs's tmpfs (~800 MB of the
guest's 2 GiB, ~490 MB of it taken by the system and the manager's raft log). ``docker load``
first unpacks the whole archive into a staging directory and then applies the layers from
it, so a load needs about twice the archive's size: the chart's three images (~230 MB of
layers) need ~460 MB more at the peak, which the default size has not. The tmpfs's limit is
raised first (``mount -o remount,size=``); it only caps what may be stored, the pages used
are what the images take.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import docker
from timing import wait_until

from swarm_lab import vm_exec
from swarm_lab.errors import LabError
from swarm_lab.vm_layout import VmNode

ROOTFS_SIZE = "1400m"
LOAD_TIMEOUT = 1200.0  # ~2 min per 100 MB under TCG on a loaded 2-core host (measured)


@dataclass(frozen=True)
class Moved:
    """What one node needed: the images it lacked and how long moving them took."""

    node: int
    images: tuple[str, ...]
    archive_bytes: int
    seconds: float


def missing_on(url: str, tags: Sequence[str]) -> list[str] | None:
    """The tags the engine at ``url`` lacks; None while it does not answer (node rebooting)."""
    try:
        client = docker.DockerClient(base_url=url, timeout=30, version="1.41")
    except docker.errors.DockerException:
        return None
    try:
        missing = []
        for tag in tags:
            try:
                client.images.get(tag)
            except docker.errors.ImageNotFound:
                missing.append(tag)
        return missing
    except docker.errors.DockerException:
        return None
    finally:
        client.close()


def _load(node: VmNode, archive: Path) -> None:
    with archive.open("rb") as data:
        done = subprocess.run(
            ["docker", "-H", node.docker_url, "load", "-q"],
            stdin=data,
            capture_output=True,
            text=True,
            timeout=LOAD_TIMEOUT,
            check=False,
        )
    assert done.returncode == 0, f"docker load into VM node {node.index} failed: {done.stderr[-2000:]}"


def _lacks(node: VmNode, tags: Sequence[str]) -> list[str]:
    def ask() -> tuple[list[str]] | None:  # a tuple: an empty list is an answer, not "not yet"
        missing = missing_on(node.docker_url, tags)
        return None if missing is None else (missing,)

    what = f"the Docker API of VM node {node.index} (rebooting?)"
    return wait_until(ask, deadline=300, what=what, every=1.0)[0]


def move_images(source_url: str, tags: Sequence[str], nodes: Sequence[VmNode], workdir: Path) -> list[Moved]:
    """Every tag in ``tags`` onto every node, from the engine at ``source_url``: one archive of
    what some node lacks, saved once, loaded node after node (in parallel the guests' vCPUs
    would only share the host's two cores). A node that goes away mid-load (another test's
    node failure) is waited for and loaded again, once."""
    wanted = [tag for tag in tags if any(tag in _lacks(node, tags) for node in nodes)]
    if not wanted:
        return [Moved(node.index, (), 0, 0.0) for node in nodes]
    archive = workdir / "images.tar"
    subprocess.run(["docker", "-H", source_url, "save", "-o", str(archive), *wanted], check=True, timeout=600)
    moved = []
    for node in nodes:
        for attempt in (1, 2):
            lacks = _lacks(node, tags)  # asked again: the node may have been rebooted meanwhile
            if not lacks:
                moved.append(Moved(node.index, (), 0, 0.0))
                break
            started = time.monotonic()
            try:
                vm_exec.check_output(node, ["mount", "-o", f"remount,size={ROOTFS_SIZE}", "/"])
                _load(node, archive)
            except (AssertionError, LabError, subprocess.TimeoutExpired):
                if attempt == 2:
                    raise
                continue
            seconds = time.monotonic() - started
            still = missing_on(node.docker_url, lacks)
            assert still == [], f"VM node {node.index} still lacks {still} after docker load"
            moved.append(Moved(node.index, tuple(lacks), archive.stat().st_size, seconds))
            break
    archive.unlink()
    return moved
