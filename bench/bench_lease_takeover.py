"""Leader take-over time of the lease on the lab's real Swarm manager, against its lease period.

Two candidate processes (tests/integration/lease_candidates.py: a real ``Lease`` each, as
controller replicas run it) share a stand-in service's labels. Each round stops the leader,
by SIGKILL or by SIGSTOP (a paused process or a cut node: it cannot renew), and measures on
CLOCK_MONOTONIC how long until the standby logs that it took the lease; the stopped one is
then replaced by a fresh candidate. The design bound is about one lease period plus a renew
interval (a third of the lease) plus the standby's CAS round trip; the round trip (one label
read and one compare-and-swap write) is measured in the same run as the baseline.

This replaces the wall-clock upper bound test_lease_swarm.py used to assert.

Usage: python bench/bench_lease_takeover.py [--docker-url URL] [--rounds 3] [--image lab/busybox]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import time
import uuid
from pathlib import Path

import aiodocker

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from lease_candidates import LEASE, Candidate, start_candidate, wait_for

from autoscaler.core import lease_rules as rules
from autoscaler.targets.docker_api import DockerApi
from autoscaler.targets.service_labels import ServiceLabelStore


async def create_stand_in(url: str, image: str) -> str:
    name = f"bench-lease-{uuid.uuid4().hex[:8]}"
    docker = aiodocker.Docker(url=url)
    try:
        await docker.services.create(
            name=name,
            task_template={"ContainerSpec": {"Image": image, "Command": ["sleep", "100000"]}},
            mode={"Replicated": {"Replicas": 0}},  # only its labels are used
        )
    finally:
        await docker.close()
    return name


async def remove(url: str, name: str) -> None:
    docker = aiodocker.Docker(url=url)
    try:
        await docker.services.delete(name)
    finally:
        await docker.close()


async def round_trip_seconds(url: str, service: str, repeat: int) -> float:
    """Median of one label read plus one CAS write, as a standby's take-over step does."""
    docker = aiodocker.Docker(url=url)
    store = ServiceLabelStore(DockerApi(docker), service)
    samples = []
    try:
        for i in range(repeat):
            started = time.monotonic()
            current = await store.read()
            await store.write(current.version, rules.holder_labels(f"probe-{i}", time.time(), LEASE))
            samples.append(time.monotonic() - started)
        current = await store.read()
        await store.write(current.version, rules.released_labels())
    finally:
        await docker.close()
    return statistics.median(samples)


def take_overs(url: str, service: str, rounds: int, how: signal.Signals) -> list[float]:
    candidates: list[Candidate] = [start_candidate(url, service, f"{how.name}-{n}") for n in range(2)]
    figures = []
    try:
        for _ in range(rounds):
            wait_for("a leader", lambda: any(c.took_at() for c in candidates), candidates)
            leader = next(c for c in candidates if c.took_at())
            standby = next(c for c in candidates if c is not leader)
            seen = len(standby.took_at())
            leader.proc.send_signal(how)
            stopped_at = time.monotonic()
            took = wait_for(
                "the standby to take over",
                lambda standby=standby, seen=seen: len(standby.took_at()) > seen,
                candidates,
            )
            figures.append(took - stopped_at)
            leader.proc.send_signal(signal.SIGCONT)
            leader.proc.kill()
            leader.proc.wait(timeout=10)
            candidates.remove(leader)
            candidates.append(start_candidate(url, service, f"{how.name}-{uuid.uuid4().hex[:4]}"))
    finally:
        for c in candidates:
            if c.proc.poll() is None:
                c.proc.send_signal(signal.SIGCONT)
                c.proc.kill()
            c.proc.wait(timeout=10)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docker-url", default=os.environ.get("DOCKER_HOST"), help="the lab's manager")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--image", default="lab/busybox")
    args = parser.parse_args()
    if not args.docker_url:
        parser.error("give --docker-url (or set DOCKER_HOST, e.g. eval $(swarm-autoscaler lab env))")
    service = asyncio.run(create_stand_in(args.docker_url, args.image))
    try:
        trip = asyncio.run(round_trip_seconds(args.docker_url, service, 10))
        killed = take_overs(args.docker_url, service, args.rounds, signal.SIGKILL)
        frozen = take_overs(args.docker_url, service, args.rounds, signal.SIGSTOP)
    finally:
        asyncio.run(remove(args.docker_url, service))
    bound = LEASE + LEASE / 3 + trip
    load = os.getloadavg()[0]
    print(
        f"lease {LEASE:g}s; label read + CAS write round trip (baseline, median of 10): {trip * 1000:.0f} ms"
    )
    print(f"design bound: lease + renew interval + round trip = {bound:.2f}s (load average {load:.1f})")
    for label, figures in (("killed", killed), ("frozen", frozen)):
        shown = ", ".join(f"{f:.2f}" for f in figures)
        print(f"  take-over after the leader {label}: {shown} s; max / bound x{max(figures) / bound:.2f}")


if __name__ == "__main__":
    main()
