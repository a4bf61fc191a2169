"""Sharing the VM lab between concurrent users, as sessions.py does for the netns lab.

Its own registrations and lock (the two labs come and go independently); the same rules:
``acquire`` boots it if needed and registers the caller, the last holder out takes down a
VM lab that a holder started, never one a person started with ``lab up --backend vm``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from swarm_lab import sessions, vm_lab, vm_layout
from swarm_lab.vm_lab import VmLabInfo

SESSIONS_DIR = vm_layout.CACHE_DIR / "vm-sessions"
LOCK_FILE = vm_layout.CACHE_DIR / "vm-lab.lock"
STARTED_BY_HOLDER = SESSIONS_DIR / "started-by-a-holder"


def lab_lock() -> contextlib.AbstractContextManager[None]:
    return sessions.lab_lock(LOCK_FILE)


def other_live_holders() -> list[int]:
    return sessions.other_live_holders(SESSIONS_DIR)


def acquire(node_count: int = 1) -> tuple[VmLabInfo, bool]:
    """The running VM lab (booted if needed) and whether this call booted it."""
    with lab_lock():
        SESSIONS_DIR.mkdir(parents=True, exist_ok=True)
        (SESSIONS_DIR / str(os.getpid())).touch()
        if vm_lab.recorded_node_count() is None:
            info = vm_lab.up(node_count)
            STARTED_BY_HOLDER.touch()
            return info, True
        if not vm_lab.is_up():
            vm_lab.up(vm_lab.info().nodes)  # repair what a crashed session left broken
        return vm_lab.info(), False


def release() -> None:
    with lab_lock():
        (SESSIONS_DIR / str(os.getpid())).unlink(missing_ok=True)
        if STARTED_BY_HOLDER.exists() and not other_live_holders():
            vm_lab.down()
            STARTED_BY_HOLDER.unlink(missing_ok=True)


def take_down_after_holders() -> None:
    SESSIONS_DIR.mkdir(parents=True, exist_ok=True)
    STARTED_BY_HOLDER.touch()


def keep_up_after_holders() -> None:
    STARTED_BY_HOLDER.unlink(missing_ok=True)


@contextlib.contextmanager
def held(node_count: int = 1) -> Iterator[VmLabInfo]:
    info, _ = acquire(node_count)
    try:
        yield info
    finally:
        release()
