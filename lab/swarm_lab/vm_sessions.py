"""Sharing the VM lab between concurrent users, as sessions.py does for the netns lab.

Its own registrations and lock (the two labs come and go independently); the same rules:
``acquire`` boots it if needed and registers the caller, the last holder out takes down a
VM lab that a holder started, never one a person started with ``lab up --backend vm``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from swarm_lab import sessions, vm_lab, vm_layout
from swarm_lab.vm_lab import VmLabInfo

VM_LAB: sessions.SharedLab[VmLabInfo] = sessions.SharedLab(
    vm_layout.CACHE_DIR / "vm-sessions", vm_layout.CACHE_DIR / "vm-lab.lock", vm_lab
)


def acquire(node_count: int = 1) -> tuple[VmLabInfo, bool]:
    return VM_LAB.acquire(node_count)


def release() -> None:
    VM_LAB.release()


@contextlib.contextmanager
def held(node_count: int = 1) -> Iterator[VmLabInfo]:
    info, _ = acquire(node_count)
    try:
        yield info
    finally:
        release()
