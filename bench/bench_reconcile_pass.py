"""What one reconcile pass costs in I/O with N services: Swarm reads and Prometheus reads.

Needs a real single-node Swarm manager (--docker-url, e.g. the lab's manager with one node)
and the Debian ``prometheus`` binary. It creates N busybox services (every K-th with one
replica, the rest with 0), starts an exporter with one ``app_load`` series per service and a
Prometheus scraping it, then times, each against a baseline measured in the same run:

- ``SwarmTarget.list_services()`` (1 services call + 1 tasks call) against the per-service
  way (1 services call + one tasks call per service);
- ``PrometheusSource.fetch`` of N requests with one grouped query (1 HTTP query) against the
  same N requests templated per service (N HTTP queries).

Usage: python bench/bench_reconcile_pass.py --docker-url unix:///path/docker.sock [-n 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiodocker

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from prom_helpers import Exporter, RealPrometheus
from timing import wait_until

from autoscaler.core.observation import MetricRequest
from autoscaler.sources.prometheus import PrometheusSource
from autoscaler.targets.swarm import SwarmTarget

T = TypeVar("T")
PREFIX = "bench-rp-"


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def timed(label: str, action: Callable[[], Awaitable[T]], repeat: int) -> tuple[T, float]:
    """Best wall time of ``repeat`` runs (best, because the noise here only ever adds time)."""
    best = float("inf")
    result: T | None = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = await action()
        best = min(best, time.perf_counter() - started)
    print(f"  {label:<52} {best * 1000:9.1f} ms   (RSS {rss_mib():.0f} MiB)", flush=True)
    assert result is not None
    return result, best


async def create_services(
    docker: aiodocker.Docker, count: int, every: int, image: str, *, start: int = 0
) -> list[str]:
    """Services ``start .. count-1`` (``bench_pass_scaling.py`` grows the swarm in steps)."""
    limit = asyncio.Semaphore(16)

    async def create(index: int) -> str:
        spec = {
            "Name": f"{PREFIX}{index:05d}",
            "Mode": {"Replicated": {"Replicas": 1 if index % every == 0 else 0}},
            "TaskTemplate": {"ContainerSpec": {"Image": image, "Args": ["sleep", "1000000"]}},
        }
        async with limit:
            answer = await docker._query_json("services/create", method="POST", data=spec)
        return str(answer["ID"])

    return list(await asyncio.gather(*(create(i) for i in range(start, count))))


async def remove_bench_services(docker: aiodocker.Docker) -> None:
    services = await docker._query_json("services", params={"filters": json.dumps({"name": [PREFIX]})})
    limit = asyncio.Semaphore(16)

    async def remove(service_id: str) -> None:
        async with limit:
            await docker._query_json(f"services/{service_id}", method="DELETE")

    await asyncio.gather(*(remove(s["ID"]) for s in services if s["Spec"]["Name"].startswith(PREFIX)))


async def running_tasks(docker: aiodocker.Docker) -> int:
    tasks = await docker._query_json("tasks", params={"filters": json.dumps({"desired-state": ["running"]})})
    return sum(1 for t in tasks if t["Status"]["State"] == "running")


async def per_service_listing(docker: aiodocker.Docker) -> dict[str, int]:
    """Baseline: what a target asking Docker once per service would do."""
    services = await docker._query_json("services")
    limit = asyncio.Semaphore(16)

    async def count(service: dict[str, Any]) -> tuple[str, int]:
        filters = json.dumps({"service": [service["ID"]], "desired-state": ["running"]})
        async with limit:
            tasks = await docker._query_json("tasks", params={"filters": filters})
        return service["ID"], sum(1 for t in tasks if t["Status"]["State"] == "running")

    return dict(await asyncio.gather(*(count(s) for s in services)))


async def bench_swarm(args: argparse.Namespace) -> list[str]:
    docker = aiodocker.Docker(url=args.docker_url)
    target = SwarmTarget(args.docker_url, timeout=60.0)
    try:
        await remove_bench_services(docker)
        started = time.perf_counter()
        await create_services(docker, args.services, args.replica_every, args.image)
        expected_running = len(range(0, args.services, args.replica_every))
        print(f"created {args.services} services in {time.perf_counter() - started:.1f} s", flush=True)
        deadline = time.monotonic() + args.settle_timeout
        while await running_tasks(docker) < expected_running:
            if time.monotonic() > deadline:
                sys.exit(f"only {await running_tasks(docker)} of {expected_running} tasks running in time")
            await asyncio.sleep(1)  # polling interval of a deadline-bounded wait
        print(f"{expected_running} tasks running after {time.perf_counter() - started:.1f} s", flush=True)

        print(f"Swarm reads, {args.services} services (best of {args.repeat}):")
        baseline, base_time = await timed(
            f"per-service tasks calls ({args.services + 1} calls)",
            lambda: per_service_listing(docker),
            args.repeat,
        )
        calls_before = target.http_requests
        states, ours = await timed("SwarmTarget.list_services (2 calls)", target.list_services, args.repeat)
        calls = (target.http_requests - calls_before) // args.repeat
        mine = {s.id: s.running for s in states}
        agree = all(mine[k] == v for k, v in baseline.items())
        print(
            f"  HTTP calls per pass: {calls} vs {args.services + 1}; speed-up x{base_time / ours:.1f}; "
            f"same counts: {agree}"
        )
        return [s.name for s in states if s.name.startswith(PREFIX)]
    finally:
        if not args.keep:
            await remove_bench_services(docker)
        await target.close()
        await docker.close()


async def bench_prometheus(args: argparse.Namespace, names: list[str]) -> None:
    exporter = Exporter()
    for index, name in enumerate(names):
        exporter.set(name, float(index))
    prometheus = RealPrometheus([f"127.0.0.1:{exporter.port}"])
    prometheus.start()
    source = PrometheusSource(prometheus.url, timeout=30.0)
    try:
        wait_until(lambda: len(prometheus.query("app_load")) == len(names), deadline=60, what="all series")
        templated = [
            MetricRequest(name, "load", "prometheus", 'app_load{service="{{ service }}"}') for name in names
        ]
        grouped = [
            MetricRequest(name, "load", "prometheus", "sum by (service) (app_load)", "service")
            for name in names
        ]
        print(f"Prometheus reads, {len(names)} requests (best of {args.repeat}):")
        sent = source.http_requests
        by_service, base_time = await timed(
            f"templated per service ({len(names)} queries)", lambda: source.fetch(templated), args.repeat
        )
        per_pass_templated = (source.http_requests - sent) // args.repeat
        sent = source.http_requests
        shared, ours = await timed("one grouped query", lambda: source.fetch(grouped), args.repeat)
        per_pass_grouped = (source.http_requests - sent) // args.repeat
        differ = [
            (t.service, by_service[t], shared[g])
            for t, g in zip(templated, grouped, strict=True)
            if by_service[t].value != shared[g].value
        ]
        valid = sum(1 for r in shared.values() if r.value is not None)
        valid_templated = sum(1 for r in by_service.values() if r.value is not None)
        print(
            f"  HTTP queries per pass: {per_pass_grouped} vs {per_pass_templated}; "
            f"speed-up x{base_time / ours:.1f}"
        )
        print(
            f"  values: grouped {valid}/{len(names)}, templated {valid_templated}/{len(names)}; "
            f"differing: {len(differ)}{f', e.g. {differ[0]}' if differ else ''}"
        )
    finally:
        await source.close()
        prometheus.destroy()
        exporter.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--docker-url", default=os.environ.get("DOCKER_HOST"), help="single-node swarm manager"
    )
    parser.add_argument("-n", "--services", type=int, default=1000)
    parser.add_argument("--replica-every", type=int, default=2, help="every K-th service gets 1 replica")
    parser.add_argument("--image", default="lab/busybox")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--settle-timeout", type=float, default=900.0)
    parser.add_argument("--keep", action="store_true", help="leave the services in place")
    parser.add_argument("--prometheus-only", action="store_true", help="skip Docker; N synthetic names")
    args = parser.parse_args()
    if not args.docker_url and not args.prometheus_only:
        parser.error("give --docker-url (or set DOCKER_HOST) to a single-node swarm manager")
    if args.prometheus_only:
        names = [f"{PREFIX}{index:05d}" for index in range(args.services)]
    else:
        names = asyncio.run(bench_swarm(args))
    asyncio.run(bench_prometheus(args, names))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
