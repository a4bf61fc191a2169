"""Lease candidates as separate processes, for the lease integration test and its bench.

Each candidate runs a real ``Lease`` against the lab's Swarm manager, "acting" every 50 ms
while ``is_leader()`` says so and printing what it did with a CLOCK_MONOTONIC stamp
(system-wide, so stamps compare across processes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from timing import wait_until

LEASE = 3.0
CANDIDATE = """
import asyncio, json, sys, time
from autoscaler.reconciler.lease import Lease
from autoscaler.targets.docker_api import DockerApi
from autoscaler.targets.service_labels import ServiceLabelStore

def say(**event):
    print(json.dumps({"t": time.monotonic(), **event}), flush=True)

async def main(url, service, identity, lease_seconds):
    lease = Lease(ServiceLabelStore(DockerApi(url), service), identity=identity, lease_seconds=lease_seconds,
                  on_change=lambda leading: say(leader=leading))
    runner = asyncio.create_task(lease.run())
    while not runner.done():
        if lease.is_leader():
            say(act=True)
        await asyncio.sleep(0.05)
    runner.result()

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
"""


@dataclass
class Candidate:
    name: str
    proc: subprocess.Popen[str]
    events: list[dict[str, Any]] = field(default_factory=list)

    def drain(self) -> None:
        """Read what the process printed so far (its stdout is non-blocking)."""
        assert self.proc.stdout is not None
        while line := self.proc.stdout.readline():
            self.events.append(json.loads(line))

    def took_at(self) -> list[float]:
        return [e["t"] for e in self.events if e.get("leader") is True]

    def acts(self) -> list[float]:
        return [e["t"] for e in self.events if e.get("act")]


def start_candidate(url: str, service: str, name: str) -> Candidate:
    proc = subprocess.Popen(
        [sys.executable, "-c", CANDIDATE, url, service, name, str(LEASE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    return Candidate(name, proc)


def wait_for(
    what: str, condition: Callable[[], Any], candidates: list[Candidate], timeout: float = 30.0
) -> float:
    """When ``condition()`` first held (CLOCK_MONOTONIC), reading every candidate's log meanwhile."""

    def drained_and_met() -> float | None:
        for c in candidates:
            c.drain()
        return time.monotonic() if condition() else None

    try:
        return wait_until(drained_and_met, deadline=timeout, what=what, every=0.02)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {[c.events[-3:] for c in candidates]}") from None
