"""bench_full_pass.py for two checkouts in one run, alternating: the ratio new / old.

Both trees are measured on the same services, the same Prometheus and the same policy files,
by the same bench code (this checkout's ``bench_full_pass.py --child``); only the
``autoscaler`` package differs, taken from each tree by PYTHONPATH. Each round runs the
dry-run variant for both trees, then the live one, the order old/new swapped every round so
drift in the machine's load falls on both. Before every live run the services that variant
scales are set back to 0 replicas, so each tree's pass 1 does the same work.

The old tree is any checkout with the same dependencies, e.g.
``git worktree add --detach /tmp/old df043d7``.

Usage: python bench/compare_trees.py --old /tmp/old [--new .] --docker-url URL [-n 1000]
       [--rounds 3] [--passes 5] [--replica-every 10] [--image lab/busybox]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent / "tests" / "integration"))
sys.path.insert(0, str(BENCH_DIR.parent / "tests"))

import bench_full_pass as full  # noqa: E402


def run_child(args: argparse.Namespace, tree: Path, variant: str, policies: Path, prometheus_url: str) -> Any:
    out = policies.parent / f"{variant}-{tree.name}.json"
    command = [
        sys.executable, str(BENCH_DIR / "bench_full_pass.py"), "--child", variant,
        "--docker-url", args.docker_url, "--prometheus-url", prometheus_url,
        "--policies", str(policies), "--passes", str(args.passes), "--log-level", args.log_level,
        "--figures-json", str(out),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree)}
    check = [sys.executable, "-c", "import autoscaler; print(autoscaler.__file__)"]
    loaded = subprocess.run(check, env=env, cwd="/", capture_output=True, text=True, check=True).stdout
    if not loaded.startswith(str(tree)):
        raise SystemExit(f"PYTHONPATH={tree} imports autoscaler from {loaded.strip()}, not from that tree")
    print(f"--- {variant}, tree {tree}", flush=True)
    subprocess.run(command, env=env, cwd="/", check=True)
    return json.loads(out.read_text())


async def set_replicas(docker_url: str, names: set[str], replicas: int) -> None:
    import aiodocker

    docker = aiodocker.Docker(url=docker_url)
    try:
        for name in sorted(names):
            info = await docker.services.inspect(name)
            spec = info["Spec"]
            spec["Mode"] = {"Replicated": {"Replicas": replicas}}
            await docker._query_json(
                f"services/{info['ID']}/update",
                method="POST",
                params={"version": info["Version"]["Index"]},
                data=spec,
            )
    finally:
        await docker.close()


def steady_median(figures: Any, what: str) -> float:
    return statistics.median(p[what] for p in figures["passes"][1:])


def compare(args: argparse.Namespace, names: list[str], work: Path) -> None:
    from prom_helpers import Exporter, RealPrometheus

    replicas = {name: 1 if int(name.rsplit("-", 1)[1]) % args.replica_every == 0 else 0 for name in names}
    zero = [name for name in names if replicas[name] == 0]
    few = set(zero[:: max(1, len(zero) // max(1, args.scale_few))][: args.scale_few])
    wants_two = {name: 1.5 * full.TARGET_PER_REPLICA for name in names}
    on_target = {name: full.TARGET_PER_REPLICA * (1 if name in few else replicas[name]) for name in names}
    policies = work / "policies"
    policies.mkdir()
    full.write_policies(policies, names)
    exporter = Exporter()
    prometheus = RealPrometheus([f"127.0.0.1:{exporter.port}"])
    trees = {"old": args.old.resolve(), "new": args.new.resolve()}
    results: dict[tuple[str, str], list[Any]] = {}
    try:
        prometheus.start()
        for round_ in range(args.rounds):
            order = ["old", "new"] if round_ % 2 == 0 else ["new", "old"]
            full.set_loads(exporter, wants_two)
            full.wait_for_loads(prometheus, wants_two)
            for which in order:
                got = run_child(args, trees[which], "dry-run", policies, prometheus.url)
                results.setdefault(("dry-run", which), []).append(got)
            full.set_loads(exporter, on_target)
            full.wait_for_loads(prometheus, on_target)
            for which in order:
                asyncio.run(set_replicas(args.docker_url, few, 0))
                got = run_child(args, trees[which], "live", policies, prometheus.url)
                results.setdefault(("live", which), []).append(got)
    finally:
        prometheus.destroy()
        exporter.close()
        asyncio.run(set_replicas(args.docker_url, few, 0))
    load = os.getloadavg()
    print(
        f"\n{len(names)} services, {args.rounds} rounds alternating; "
        f"load average now {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    print(f"old = {trees['old']}, new = {trees['new']}; steady = median of passes 2-{args.passes} per run")
    for variant in ("dry-run", "live"):
        for what in ("wall_ms", "cpu_ms"):
            old = [steady_median(f, what) for f in results[(variant, "old")]]
            new = [steady_median(f, what) for f in results[(variant, "new")]]
            ratio = statistics.median(new) / statistics.median(old)
            print(
                f"  {variant:<7} steady {what[:-3]:<4}: old {', '.join(f'{v:.0f}' for v in old)} ms; "
                f"new {', '.join(f'{v:.0f}' for v in new)} ms; new/old of the medians x{ratio:.3f}"
            )
        old_rss = max(f["max_rss"] for f in results[(variant, "old")])
        new_rss = max(f["max_rss"] for f in results[(variant, "new")])
        print(f"  {variant:<7} peak RSS: old {old_rss:.1f} MiB, new {new_rss:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", type=Path, required=True, help="the baseline checkout")
    parser.add_argument("--new", type=Path, default=BENCH_DIR.parent, help="default: this checkout")
    parser.add_argument("--docker-url", default=os.environ.get("DOCKER_HOST"), help="swarm manager")
    parser.add_argument("-n", "--services", type=int, default=1000)
    parser.add_argument("--replica-every", type=int, default=10, help="every K-th service gets 1 replica")
    parser.add_argument("--scale-few", type=int, default=5, help="zero-replica services the live run scales")
    parser.add_argument("--image", default="lab/busybox")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--settle-timeout", type=float, default=900.0)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--keep", action="store_true", help="leave the services and files in place")
    args = parser.parse_args()
    if not args.docker_url:
        parser.error("give --docker-url (or set DOCKER_HOST) to a swarm manager")
    from bench_reconcile_pass import bench_swarm

    setup = argparse.Namespace(**{**vars(args), "keep": True}, repeat=1)
    work = Path(tempfile.mkdtemp(prefix="bench-compare-trees-"))
    try:
        names = sorted(asyncio.run(bench_swarm(setup)))
        compare(args, names, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
            asyncio.run(full.remove_services(args.docker_url))


if __name__ == "__main__":
    main()
