"""Cost of one reconcile pass per service, from 100 to 10,000 services, two trees in one run (issue 15).

Goal at 10,000 services: steady pass <= 2 s wall and <= 200 MB RSS, first pass <= 4 s, and
the cost per service flat from 100 to 10,000.

One engine, one Prometheus, services grown in place: for each size (``--sizes``, ascending)
the parent creates the missing busybox services (every K-th with one replica), writes one
policy file per service and runs ``bench_full_pass.py``'s child (one fresh process per
measurement, so its RSS is a controller's alone) for the dry-run and the live variant (see
that script's docstring for what they do). With ``--baseline TREE`` (a checkout of the
code to compare against, e.g. ``git worktree add --detach /tmp/base main``) every
measurement is taken on both trees, alternating which goes first, each tree's own ``autoscaler``
package (PYTHONPATH) under this checkout's bench code (``compare_trees.run_child``): the
ratio of the two is then not skewed by load that changed during the run.

After each live child the services it scaled (0 -> 1) are set back to 0, so every tree
and every size starts from the same swarm.

A private engine for it, apart from the labs (its own dockerd in network namespace
``s10k``): ``bash bench/private_engine.sh up`` (``down`` removes it and everything in it).

Usage: python bench/bench_pass_scaling.py --docker-url unix:///tmp/s10k/run/docker.sock \\
           [--sizes 100,1000,3000,10000] [--baseline /tmp/base]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiodocker

BENCH_DIR = Path(__file__).resolve().parent
THIS_TREE = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(THIS_TREE / "tests" / "integration"))

from bench_full_pass import TARGET_PER_REPLICA, set_loads, wait_for_loads, write_policies  # noqa: E402
from bench_reconcile_pass import PREFIX, create_services, remove_bench_services  # noqa: E402
from compare_trees import run_child, set_replicas  # noqa: E402


@dataclass(frozen=True)
class ChildFigures:
    tree: str
    size: int
    variant: str
    first_ms: float
    steady_ms: float  # median wall of passes 2..N
    steady_cpu_ms: float
    peak_mib: float  # VmHWM after the last pass: the controller's, not the reads measured after it


def child_figures(figures: Any, tree: str, size: int, variant: str) -> ChildFigures:
    """The figures ``bench_full_pass.py --child --figures-json`` wrote, reduced to one row."""
    passes = figures["passes"]
    if len(passes) < 2:
        raise SystemExit("need --passes >= 2: pass 1 is the first pass, the others the steady state")
    steady = passes[1:]
    return ChildFigures(
        tree,
        size,
        variant,
        first_ms=passes[0]["wall_ms"],
        steady_ms=statistics.median(p["wall_ms"] for p in steady),
        steady_cpu_ms=statistics.median(p["cpu_ms"] for p in steady),
        # Not figures["max_rss"] (the child's peak at exit): the "reads again" baseline runs
        # after the passes with the controller still in memory, so its own decoding added on top.
        peak_mib=passes[-1]["max_rss"],
    )


async def grow_to(docker: aiodocker.Docker, existing: int, size: int, every: int, image: str) -> None:
    """Services ``existing .. size-1`` created, and every replica task of the first ``size`` running."""
    await create_services(docker, size, every, image, start=existing)
    await wait_for_running(docker, len(range(0, size, every)))


async def wait_for_running(docker: aiodocker.Docker, expected: int) -> None:
    deadline = time.monotonic() + 900
    while (running := await count_running(docker)) != expected:
        if time.monotonic() > deadline:
            raise SystemExit(f"{running} tasks running, not {expected}, after 900 s")
        await asyncio.sleep(1)  # polling interval of a deadline-bounded wait


async def count_running(docker: aiodocker.Docker) -> int:
    tasks = await docker._query_json("tasks", params={"filters": json.dumps({"desired-state": ["running"]})})
    return sum(1 for t in tasks if t["Status"]["State"] == "running")


async def reusable_services(docker: aiodocker.Docker, first_size: int) -> int:
    """How many bench services (``PREFIX00000`` onwards, as ``grow_to`` made them) are there to keep; 0 if
    they are not exactly the first N or more than the first size."""
    services = await docker._query_json("services", params={"filters": json.dumps({"name": [PREFIX]})})
    names = sorted(s["Spec"]["Name"] for s in services if s["Spec"]["Name"].startswith(PREFIX))
    if len(names) > first_size or names != [f"{PREFIX}{i:05d}" for i in range(len(names))]:
        return 0
    return len(names)


def row(f: ChildFigures) -> str:
    return (
        f"| {f.size:,} | {f.tree} | {f.variant} | {f.steady_ms:,.0f} ms | {f.steady_cpu_ms:,.0f} ms | "
        f"{f.first_ms / 1000:.2f} s | {f.peak_mib:.0f} MiB | {f.steady_ms / f.size:.3f} ms | "
        f"{f.steady_cpu_ms / f.size:.3f} ms |"
    )


def busy_cores(window: float) -> float:
    """CPUs busy on the whole machine over ``window`` seconds (``/proc/stat``: all but idle
    and iowait), e.g. 1.4 on two cores of which one is fully busy and the other 40 %."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]

    total0, idle0 = sample()
    time.sleep(window)  # a rate needs two samples: this is the measurement, not a wait for something
    total1, idle1 = sample()
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / max(1, total1 - total0))


def wait_for_quiet(below: float, deadline: float) -> str:
    """Wait (up to ``deadline`` seconds) until the machine is quiet: fewer than ``below``
    CPUs busy over 2 s. Growing the swarm by thousands of services keeps dockerd busy for
    tens of seconds after the last create returns; a first pass measured then took 5.1 s
    instead of 3.6 s. Returns what was seen, for the log."""
    started = time.monotonic()
    while True:
        busy = busy_cores(2.0)
        waited = time.monotonic() - started
        if busy < below:
            return f"quiet after {waited:.0f} s ({busy:.2f} CPUs busy)"
        if waited > deadline:
            return f"NOT quiet after {waited:.0f} s ({busy:.2f} CPUs busy): measured anyway"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--docker-url", default=os.environ.get("DOCKER_HOST"), help="single-node swarm manager"
    )
    parser.add_argument("--sizes", default="100,1000,3000,10000", help="service counts, ascending")
    parser.add_argument("--baseline", type=Path, help="a checkout to measure against, alternating")
    parser.add_argument("--replica-every", type=int, default=100, help="every K-th service gets 1 replica")
    parser.add_argument("--scale-few", type=int, default=5, help="zero-replica services the live run scales")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--image", default="lab/busybox")
    parser.add_argument("--keep", action="store_true", help="leave the services in place afterwards")
    parser.add_argument(
        "--quiet-below",
        type=float,
        default=0.3,
        help="before each measurement wait until fewer than this many CPUs are busy (0: do not wait)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="start from the bench services a --keep run left (if no more than the first size) "
        "instead of removing them: creating 10,000 takes a quarter of an hour",
    )
    args = parser.parse_args()
    if not args.docker_url:
        parser.error("give --docker-url (or set DOCKER_HOST) to a single-node swarm manager")
    sizes = [int(s) for s in args.sizes.split(",")]
    if sizes != sorted(sizes):
        parser.error("--sizes must be ascending: services are only ever added")
    trees = {"this": THIS_TREE} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    figures = asyncio.run(measure(args, sizes, trees))
    print(
        "\n| services | tree | variant | steady pass (wall) | steady CPU | first pass (wall) | peak RSS "
        "| per service (wall) | per service (CPU) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for f in sorted(figures, key=lambda f: (f.size, f.variant, f.tree)):
        print(row(f))


async def measure(args: argparse.Namespace, sizes: list[int], trees: dict[str, Path]) -> list[ChildFigures]:
    from prom_helpers import Exporter, RealPrometheus

    docker = aiodocker.Docker(url=args.docker_url)
    exporter = Exporter()
    prometheus = RealPrometheus([f"127.0.0.1:{exporter.port}"], scrape_interval="5s")
    work = Path(tempfile.mkdtemp(prefix="bench-pass-scaling-"))
    figures: list[ChildFigures] = []
    try:
        existing = await reusable_services(docker, sizes[0]) if args.reuse else 0
        if not existing:
            await remove_bench_services(docker)
        prometheus.start()
        for step, size in enumerate(sizes):
            started = time.monotonic()
            await grow_to(docker, existing, size, args.replica_every, args.image)
            existing = size
            names = [f"{PREFIX}{i:05d}" for i in range(size)]
            print(f"{size} services ready ({time.monotonic() - started:.0f} s)", flush=True)
            policies = work / f"policies-{size}"
            policies.mkdir()
            write_policies(policies, names)
            zero = [n for i, n in enumerate(names) if i % args.replica_every != 0]
            few = zero[:: max(1, len(zero) // max(1, args.scale_few))][: args.scale_few]
            loads = {
                "dry-run": {n: 1.5 * TARGET_PER_REPLICA for n in names},  # ceil(1.5) = 2 replicas
                "live": {
                    n: TARGET_PER_REPLICA * (1 if n in few or i % args.replica_every == 0 else 0)
                    for i, n in enumerate(names)
                },
            }
            for turn, variant in enumerate(("dry-run", "live")):
                set_loads(exporter, loads[variant])
                wait_for_loads(prometheus, loads[variant])
                order = list(trees.items())
                if (step + turn) % 2:
                    order.reverse()
                for tree_name, tree in order:
                    if args.quiet_below > 0:
                        print(wait_for_quiet(args.quiet_below, deadline=300.0), flush=True)
                    got = run_child(args, tree, variant, policies, prometheus.url)
                    figures.append(child_figures(got, tree_name, size, variant))
                    print(row(figures[-1]), flush=True)
                    if variant == "live":  # undo its scale-ups
                        await set_replicas(args.docker_url, set(few), 0)
                        await wait_for_running(docker, len(range(0, size, args.replica_every)))
        return figures
    finally:
        prometheus.destroy()
        exporter.close()
        if not args.keep:
            await remove_bench_services(docker)
        await docker.close()


if __name__ == "__main__":
    main()
