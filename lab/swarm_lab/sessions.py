"""Sharing one lab between concurrent users (several pytest sessions, a bench script).

``acquire`` brings the lab up if needed and registers the caller; ``release`` takes it
down when the last holder leaves a lab that a holder (not a person running ``lab up``)
started. Registrations are pid files in the cache dir (it survives ``lab down``); a dead
pid's registration is ignored. Up and down are serialised by an flock so two sessions
never race to create it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from swarm_lab import host, layout, swarm
from swarm_lab import lab as lab_api
from swarm_lab.lab import LabInfo, NodeDownMode

SESSIONS_DIR = layout.CACHE_DIR / "sessions"
LOCK_FILE = layout.CACHE_DIR / "lab.lock"
# Present while the running lab was started by acquire(); `lab up` by hand removes it.
STARTED_BY_HOLDER = SESSIONS_DIR / "started-by-a-holder"


@contextlib.contextmanager
def lab_lock(lock_file: Path = LOCK_FILE) -> Iterator[None]:
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def other_live_holders(sessions_dir: Path = SESSIONS_DIR) -> list[int]:
    """Pids of other live processes holding the lab (pruning dead ones' registrations)."""
    holders = []
    for entry in sessions_dir.glob("*"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid != os.getpid() and host.is_alive(pid):
            holders.append(pid)
        elif pid != os.getpid():
            entry.unlink(missing_ok=True)  # a crashed holder
    return holders


def acquire(node_count: int = 3) -> tuple[LabInfo, bool]:
    """The running lab (started if needed) and whether this call started it."""
    with lab_lock():
        SESSIONS_DIR.mkdir(parents=True, exist_ok=True)
        (SESSIONS_DIR / str(os.getpid())).touch()
        if lab_api.recorded_node_count() is None:
            info = lab_api.up(node_count)
            STARTED_BY_HOLDER.touch()
            return info, True
        if not lab_api.is_up():
            lab_api.up(lab_api.info().nodes)  # repair what a crashed test left broken
        return lab_api.info(), False


def release() -> None:
    """Drop this process's hold; the last holder out takes down a lab a holder started."""
    with lab_lock():
        (SESSIONS_DIR / str(os.getpid())).unlink(missing_ok=True)
        if STARTED_BY_HOLDER.exists() and not other_live_holders():
            lab_api.down()
            STARTED_BY_HOLDER.unlink(missing_ok=True)


def take_down_after_holders() -> None:
    """The lab is no longer wanted by hand: the last test session out takes it down."""
    SESSIONS_DIR.mkdir(parents=True, exist_ok=True)
    STARTED_BY_HOLDER.touch()


def keep_up_after_holders() -> None:
    """A person asked for the lab: the last test session must not take it down."""
    STARTED_BY_HOLDER.unlink(missing_ok=True)


class LabHandle:
    """The running lab as tests see it: LabInfo's addresses plus the failure and load helpers."""

    def __init__(self, info: LabInfo) -> None:
        self.info = info
        self.manager_url = info.manager_url
        self.node_urls = info.node_urls
        self.node_ips = info.node_ips
        self.prometheus_url = info.prometheus_url
        self.network = info.network
        self.images = info.images

    def node_down(self, n: int, mode: NodeDownMode = "link") -> None:
        lab_api.node_down(n, mode)

    def node_up(self, n: int) -> None:
        lab_api.node_up(n)

    def daemon_paused(self, n: int) -> contextlib.AbstractContextManager[int]:
        """Node ``n``'s dockerd SIGSTOPped inside the ``with`` block, resumed on leaving it."""
        return lab_api.daemon_paused(n)

    def deploy_sample(self, replicas: int = 2, work_ms: float = 2.0) -> None:
        swarm.deploy_sample(replicas, work_ms)

    def set_load(self, rps: float, service: str = swarm.WEB) -> None:
        swarm.set_load(rps, service)
