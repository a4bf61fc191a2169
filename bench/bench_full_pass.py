"""One full reconcile pass with N services: wall time, RSS and HTTP calls per pass (issue 3).

Goal: <= 1 s and <= 100 MB RSS for 1,000 services on a real single-node engine, with a
real Prometheus holding one series per service. Needs a single-node Swarm manager
(--docker-url) and the Debian ``prometheus`` binary.

The parent process creates N busybox services (every K-th with one replica, the rest 0;
setup shared with ``bench_reconcile_pass.py``), serves one ``app_load`` series per service
to a real Prometheus and writes one policy file per service, each with the same GROUPED
query (``seriesLabel: service``) so one Prometheus query serves every policy. Each variant
then runs in a fresh child process, so its RSS is that of a controller and nothing else:

- ``dry-run``: every service's load asks for 2 replicas, so every pass decides a change for
  all N services and performs none (``dry_run=True``);
- ``live``: ``dry_run=False``; loads equal 10 x the current replicas (exactly on target) so
  nothing needs scaling, except ``--scale-few`` zero-replica services whose load asks for 1
  replica: the first pass scales those, later passes find everything on target.

The child first times the reads alone (``SwarmTarget.list_services`` + one
``PrometheusSource.fetch`` of the N grouped requests) as the baseline, then ``run_once()`` of
a real ``Reconciler`` (real target and source, ``PolicyStore``, ``ControllerMetrics`` on a
private registry, JSON logs to a file at --log-level: INFO, like ``run``, logs every
decision), then the reads again to bracket load drift. Pass 1 includes connection set-up
(and, for the Reconciler, parsing the N policy files); later passes are the steady state.

Usage: python bench/bench_full_pass.py --docker-url unix:///path/docker.sock [-n 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import inspect
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent / "tests" / "integration"))
sys.path.insert(0, str(BENCH_DIR.parent / "tests"))

QUERY = "sum by (service) (app_load)"
TARGET_PER_REPLICA = 10.0
MAX_REPLICAS = 3

POLICY_TEMPLATE = """\
apiVersion: autoscaler.swarm/v1
kind: ScalingPolicy
metadata:
  name: {service}
spec:
  service: {service}
  minReplicas: 0
  maxReplicas: {max_replicas}
  metrics:
    - name: load
      prometheus:
        query: {query}
        seriesLabel: service
      target:
        averageValue: {target:g}
"""


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def vm_rss_mib() -> float:
    return _status_mib("VmRSS")


def max_rss_mib() -> float:
    """Peak RSS of this process (VmHWM). Not ``ru_maxrss``: Linux carries that over fork and
    exec from the parent, so every child looked at least as big as the bench driver."""
    return _status_mib("VmHWM")


# -- child: one variant, measured in a process that does nothing else ------------------------


@dataclass(frozen=True)
class PassFigures:
    label: str
    wall_ms: float
    cpu_ms: float  # this process's CPU: less disturbed than wall time by other load on the machine
    docker_calls: int
    prometheus_calls: int
    vm_rss: float
    max_rss: float
    outcomes: str = ""

    def row(self) -> str:
        return (
            f"  {self.label:<14} {self.wall_ms:7.1f} ms (CPU {self.cpu_ms:6.1f})  "
            f"docker {self.docker_calls:3d}  prometheus {self.prometheus_calls:2d}  "
            f"VmRSS {self.vm_rss:5.1f} MiB  maxRSS {self.max_rss:5.1f} MiB  {self.outcomes}"
        )


async def measure_reads(args: argparse.Namespace, names: list[str], label: str) -> list[PassFigures]:
    """Baseline: the two reads a pass cannot avoid, with fresh clients (pass 1 pays connecting)."""
    from autoscaler.core.observation import MetricRequest
    from autoscaler.sources.prometheus import PrometheusSource
    from autoscaler.targets.swarm import SwarmTarget

    target = SwarmTarget(args.docker_url, timeout=60.0)
    source = PrometheusSource(args.prometheus_url, timeout=30.0)
    requests = [MetricRequest(name, "load", "prometheus", QUERY, "service") for name in names]
    figures = []
    try:
        for index in range(args.passes):
            docker_before, prometheus_before = target.http_requests, source.http_requests
            started, cpu_started = time.perf_counter(), time.process_time()
            states = await target.list_services()
            readings = await source.fetch(requests)
            wall = (time.perf_counter() - started) * 1000
            cpu = (time.process_time() - cpu_started) * 1000
            valid = sum(1 for r in readings.values() if r.value is not None)
            figures.append(
                PassFigures(
                    f"{label} {index + 1}",
                    wall,
                    cpu,
                    target.http_requests - docker_before,
                    source.http_requests - prometheus_before,
                    vm_rss_mib(),
                    max_rss_mib(),
                    f"{len(states)} services, {valid} values",
                )
            )
            print(figures[-1].row(), flush=True)
    finally:
        await target.close()
        await source.close()
    return figures


async def measure_reconciler(args: argparse.Namespace, log_path: Path) -> list[PassFigures]:
    from prometheus_client import CollectorRegistry

    from autoscaler.observability.logs import configure_logging
    from autoscaler.observability.metrics import ControllerMetrics

    try:
        from autoscaler.policy_sources.loader import PolicyStore
    except ModuleNotFoundError:  # a tree from before issue 9's renames (compare_trees.py --old)
        from autoscaler.policy.loader import PolicyStore  # type: ignore[no-redef]
    from autoscaler.reconciler.loop import Reconciler
    from autoscaler.sources.prometheus import PrometheusSource
    from autoscaler.targets.swarm import SwarmTarget

    log_file = log_path.open("a")
    configure_logging("json", args.log_level, log_file)
    target = SwarmTarget(args.docker_url)
    source = PrometheusSource(args.prometheus_url)
    reconciler = Reconciler(
        target=target,
        sources={"prometheus": source},
        policies=PolicyStore([args.policies]),
        metrics=ControllerMetrics(CollectorRegistry()),
        dry_run=args.dry_run,
        **run_options(Reconciler),
    )
    # Profiling inflates the wall and CPU figures of the passes it covers: a separate run.
    # CPU time, not wall: on a shared machine the wall clock charges other processes' turns on
    # the CPU to whichever function happened to be running.
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    figures = []
    try:
        for index in range(args.passes):
            docker_before, prometheus_before = target.http_requests, source.http_requests
            started, cpu_started = time.perf_counter(), time.process_time()
            if profiler is not None and index > 0:
                profiler.enable()
            result = await reconciler.run_once()
            if profiler is not None:
                profiler.disable()
            wall = (time.perf_counter() - started) * 1000
            cpu = (time.process_time() - cpu_started) * 1000
            outcomes = Counter(r.outcome.value for r in reconciler.status.records.values())
            summary = f"{len(result.services)} services: " + ", ".join(
                f"{count} {outcome}" for outcome, count in sorted(outcomes.items())
            )
            if not result.ok:
                summary += f"; FAILED {len(result.failed)} target_error={result.target_error}"
            figures.append(
                PassFigures(
                    f"run_once {index + 1}",
                    wall,
                    cpu,
                    target.http_requests - docker_before,
                    source.http_requests - prometheus_before,
                    vm_rss_mib(),
                    max_rss_mib(),
                    summary,
                )
            )
            print(figures[-1].row(), flush=True)
        await time_matching(reconciler, target)
    finally:
        await target.close()
        await source.close()
        log_file.close()
    if profiler is not None:
        print(f"  where the steady passes spend CPU (cProfile, top {args.profile} by own time):")
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(args.profile)
    return figures


def run_options(reconciler_class: Any) -> dict[str, Any]:
    """What ``run`` sets on its Reconciler beyond the above, if this tree's Reconciler has it."""
    parameters = inspect.signature(reconciler_class).parameters
    return {"freeze_after_first_pass": True} if "freeze_after_first_pass" in parameters else {}


async def time_matching(reconciler: Any, target: Any) -> None:
    """Pairing services with policies alone, against a by-name dict lookup (its lower bound)."""
    from autoscaler.reconciler.matching import match

    policies, services = reconciler.policies.current(), await target.list_services()

    def by_name() -> int:
        named = {p.spec.service: p for p in policies if p.spec.service is not None}
        return sum(1 for s in services if s.name in named)

    def by_match() -> int:
        return len(match(policies, services)[0])

    figures = {}
    for label, pair in (("match()", by_match), ("dict", by_name)):
        best, paired = float("inf"), 0
        for _ in range(3):
            started = time.process_time()
            paired = pair()
            best = min(best, time.process_time() - started)
        figures[label] = (best * 1000, paired)
    (ours, paired), (floor, floor_paired) = figures["match()"], figures["dict"]
    print(
        f"  pairing {len(services)} services with {len(policies)} policies (CPU, best of 3): "
        f"match() {ours:.1f} ms ({paired} paired) vs by-name dict {floor:.2f} ms ({floor_paired} paired)"
    )


def steady(figures: list[PassFigures]) -> list[PassFigures]:
    """Every pass but the first, which pays connecting (and parsing the policy files)."""
    return figures[1:] or figures


async def child(args: argparse.Namespace) -> None:
    names = sorted(p.stem for p in args.policies.glob("*.yaml"))
    mode = "dry_run=True" if args.dry_run else "dry_run=False"
    print(
        f"variant {args.variant} ({mode}, logs at {args.log_level}), {len(names)} services; "
        f"RSS after imports {vm_rss_mib():.1f} MiB",
        flush=True,
    )
    before = await measure_reads(args, names, "reads")
    passes = await measure_reconciler(args, args.policies.parent / f"{args.variant}.log")
    after = await measure_reads(args, names, "reads again")
    reads = steady(before) + steady(after)
    for what in ("wall_ms", "cpu_ms"):
        ours = statistics.median(getattr(f, what) for f in steady(passes))
        baseline = statistics.median(getattr(f, what) for f in reads)
        print(
            f"  steady {what[:-3]:<4}: run_once median {ours:7.1f} ms vs reads-alone median "
            f"{baseline:6.1f} ms = x{ours / baseline:.2f}; first pass {getattr(passes[0], what):.1f} ms"
        )
    print(f"  peak RSS {max_rss_mib():.1f} MiB (goal: <= 1000 ms wall, <= 100 MB RSS)", flush=True)
    if args.figures_json is not None:  # for compare_trees.py
        figures = {
            "passes": [dataclasses.asdict(f) for f in passes],
            "reads": [dataclasses.asdict(f) for f in reads],
            "max_rss": max_rss_mib(),
        }
        args.figures_json.write_text(json.dumps(figures))


# -- parent: the engine, the series and the policies ------------------------------------------


def write_policies(directory: Path, names: list[str]) -> None:
    for name in names:
        text = POLICY_TEMPLATE.format(
            service=name, max_replicas=MAX_REPLICAS, query=QUERY, target=TARGET_PER_REPLICA
        )
        (directory / f"{name}.yaml").write_text(text)


def set_loads(exporter: Any, loads: dict[str, float]) -> None:
    for name, value in loads.items():
        exporter.set(name, value)


def wait_for_loads(prometheus: Any, loads: dict[str, float]) -> None:
    from timing import wait_until

    def seen() -> bool:
        result = prometheus.query(QUERY)
        got = {r["metric"].get("service"): float(r["value"][1]) for r in result}
        return all(got.get(name) == value for name, value in loads.items())

    wait_until(seen, deadline=120, what="Prometheus to hold every service's new load", every=0.5)


def run_variant(args: argparse.Namespace, variant: str, policies: Path, prometheus_url: str) -> None:
    command = [
        sys.executable, __file__, "--child", variant, "--docker-url", args.docker_url,
        "--prometheus-url", prometheus_url, "--policies", str(policies), "--passes", str(args.passes),
        "--log-level", args.log_level, "--profile", str(args.profile),
    ]  # fmt: skip
    subprocess.run(command, check=True)


def parent(args: argparse.Namespace) -> None:
    from bench_reconcile_pass import bench_swarm

    # keep: bench_swarm would otherwise remove the services it just made.
    setup = argparse.Namespace(**{**vars(args), "keep": True}, repeat=1)
    work = Path(tempfile.mkdtemp(prefix="bench-full-pass-"))
    try:
        names = sorted(asyncio.run(bench_swarm(setup)))  # creates the services, prints its read figures
        run_variants(args, names, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
            asyncio.run(remove_services(args.docker_url))


def run_variants(args: argparse.Namespace, names: list[str], work: Path) -> None:
    from prom_helpers import Exporter, RealPrometheus

    replicas = {name: 1 if int(name.rsplit("-", 1)[1]) % args.replica_every == 0 else 0 for name in names}
    zero = [name for name in names if replicas[name] == 0]
    few = set(zero[:: max(1, len(zero) // max(1, args.scale_few))][: args.scale_few])
    wants_two = {name: 1.5 * TARGET_PER_REPLICA for name in names}  # ceil(1.5) = 2 replicas
    on_target = {name: TARGET_PER_REPLICA * (1 if name in few else replicas[name]) for name in names}

    policies = work / "policies"
    policies.mkdir()
    write_policies(policies, names)
    exporter = Exporter()
    set_loads(exporter, wants_two)
    prometheus = RealPrometheus([f"127.0.0.1:{exporter.port}"])
    try:
        prometheus.start()
        wait_for_loads(prometheus, wants_two)
        print(f"{len(names)} policies in {policies}; logs in {work} (kept with --keep)", flush=True)
        run_variant(args, "dry-run", policies, prometheus.url)
        set_loads(exporter, on_target)
        wait_for_loads(prometheus, on_target)
        print(f"live variant scales these {len(few)} from 0 to 1: {', '.join(sorted(few))}", flush=True)
        run_variant(args, "live", policies, prometheus.url)
    finally:
        prometheus.destroy()
        exporter.close()


async def remove_services(docker_url: str) -> None:
    import aiodocker
    from bench_reconcile_pass import remove_bench_services

    docker = aiodocker.Docker(url=docker_url)
    try:
        await remove_bench_services(docker)
    finally:
        await docker.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--docker-url", default=os.environ.get("DOCKER_HOST"), help="single-node swarm manager"
    )
    parser.add_argument("-n", "--services", type=int, default=1000)
    parser.add_argument("--replica-every", type=int, default=10, help="every K-th service gets 1 replica")
    parser.add_argument("--scale-few", type=int, default=5, help="zero-replica services the live run scales")
    parser.add_argument("--image", default="lab/busybox")
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--settle-timeout", type=float, default=900.0)
    parser.add_argument(
        "--log-level", default="INFO", help="controller log level (INFO logs every decision, as 'run' does)"
    )
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="print the N costliest functions of steady passes"
    )
    parser.add_argument(
        "--keep", action="store_true", help="leave the services, policies and controller logs in place"
    )
    parser.add_argument("--child", choices=["dry-run", "live"], help=argparse.SUPPRESS)
    parser.add_argument("--prometheus-url", help=argparse.SUPPRESS)
    parser.add_argument("--policies", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--figures-json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.docker_url:
        parser.error("give --docker-url (or set DOCKER_HOST) to a single-node swarm manager")
    if args.child:
        args.variant, args.dry_run = args.child, args.child == "dry-run"
        asyncio.run(child(args))
    else:
        parent(args)


if __name__ == "__main__":
    main()
