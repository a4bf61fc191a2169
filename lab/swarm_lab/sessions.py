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
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from swarm_lab import host, layout, swarm
from swarm_lab import lab as lab_api
from swarm_lab.lab import LabInfo, NodeDownMode

InfoT = TypeVar("InfoT")
InfoT_co = TypeVar("InfoT_co", covariant=True)


class LabBackend(Protocol[InfoT_co]):
    """What sharing needs of a lab (``lab`` and ``vm_lab`` are the two)."""

    def up(self, node_count: int) -> InfoT_co: ...
    def down(self) -> None: ...
    def is_up(self) -> bool: ...
    def info(self) -> InfoT_co: ...
    def recorded_node_count(self) -> int | None: ...


@dataclass(frozen=True)
class SharedLab(Generic[InfoT]):
    """One lab's registrations (pid files in ``sessions_dir``) and its flock."""

    sessions_dir: Path
    lock_file: Path
    lab: LabBackend[InfoT]

    @property
    def started_by_holder(self) -> Path:
        # Present while the running lab was started by acquire(); `lab up` by hand removes it.
        return self.sessions_dir / "started-by-a-holder"

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        self.lock_file.parent.mkdir(parents=True, exist_ok=True)
        with self.lock_file.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def other_live_holders(self) -> list[int]:
        """Pids of other live processes holding the lab (pruning dead ones' registrations)."""
        holders = []
        for entry in self.sessions_dir.glob("*"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            if pid != os.getpid() and host.is_alive(pid):
                holders.append(pid)
            elif pid != os.getpid():
                entry.unlink(missing_ok=True)  # a crashed holder
        return holders

    def acquire(self, node_count: int) -> tuple[InfoT, bool]:
        """The running lab (started if needed) and whether this call started it."""
        with self.lock():
            self.sessions_dir.mkdir(parents=True, exist_ok=True)
            (self.sessions_dir / str(os.getpid())).touch()
            if self.lab.recorded_node_count() is None:
                info = self.lab.up(node_count)
                self.started_by_holder.touch()
                return info, True
            if not self.lab.is_up():
                self.lab.up(self.lab.recorded_node_count() or node_count)  # repair a crashed test's lab
            return self.lab.info(), False

    def release(self) -> None:
        """Drop this process's hold; the last holder out takes down a lab a holder started."""
        with self.lock():
            (self.sessions_dir / str(os.getpid())).unlink(missing_ok=True)
            if self.started_by_holder.exists() and not self.other_live_holders():
                self.lab.down()
                self.started_by_holder.unlink(missing_ok=True)

    def take_down_after_holders(self) -> None:
        """The lab is no longer wanted by hand: the last test session out takes it down."""
        self.sessions_dir.mkdir(parents=True, exist_ok=True)
        self.started_by_holder.touch()

    def keep_up_after_holders(self) -> None:
        """A person asked for the lab: the last test session must not take it down."""
        self.started_by_holder.unlink(missing_ok=True)


NETNS_LAB: SharedLab[LabInfo] = SharedLab(
    layout.CACHE_DIR / "sessions", layout.CACHE_DIR / "lab.lock", lab_api
)


def acquire(node_count: int = 3) -> tuple[LabInfo, bool]:
    return NETNS_LAB.acquire(node_count)


def release() -> None:
    NETNS_LAB.release()


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
