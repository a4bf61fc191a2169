"""CPU time of the first policy load of N policy files, two trees in one run (issue 15).

At 10,000 services the controller's first pass is mostly this: ``PolicyStore.reload`` over
10,000 YAML files, each read, parsed, bounds-checked (``yaml_limits``) and validated. The
files are the ones ``bench_full_pass.py`` writes (one grouped-query policy per service).
Each measurement is a fresh child process (``--child``), so imports and caches are cold
as at start-up, with garbage collection off as the reconciler's first pass has it.

With ``--baseline TREE`` (e.g. ``git worktree add --detach /tmp/base main``) each round
measures both trees, alternating which goes first, each with its own ``autoscaler``
package (PYTHONPATH) under this checkout's bench code, and prints the ratio of the
medians: load that changes during the run falls on both.

Usage: python bench/bench_policy_load.py [-n 10000] [--rounds 5] [--baseline /tmp/base]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
THIS_TREE = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

from bench_full_pass import write_policies  # noqa: E402


def child(policies: Path) -> None:
    """One first load, as the controller does it at start-up; prints its figures as JSON."""
    from autoscaler.policy_sources.loader import PolicyStore

    gc.disable()  # as Reconciler's first pass: no collections over the objects being built
    store = PolicyStore([policies])
    started_cpu, started_wall = time.process_time(), time.perf_counter()
    result = store.reload()
    cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started_wall
    if result.problems:
        raise SystemExit(f"{len(result.problems)} problems, first: {result.problems[0]}")
    print(json.dumps({"policies": len(result.added), "cpu_s": cpu, "wall_s": wall}))


def run_child(tree: Path, policies: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    check = [sys.executable, "-c", "import autoscaler; print(autoscaler.__file__)"]
    loaded = subprocess.run(check, env=env, cwd="/", capture_output=True, text=True, check=True).stdout
    if not loaded.startswith(str(tree)):
        raise SystemExit(f"PYTHONPATH={tree} imports autoscaler from {loaded.strip()}, not from that tree")
    command = [sys.executable, __file__, "--child", str(policies)]
    out = subprocess.run(command, env=env, cwd="/", capture_output=True, text=True, check=True).stdout
    figures: dict[str, float] = json.loads(out)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--policies", type=int, default=10_000, help="policy files to load")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="a checkout to measure against, alternating")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    trees = {"this": THIS_TREE} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    work = Path(tempfile.mkdtemp(prefix="bench-policy-load-"))
    try:
        write_policies(work, [f"bench-{i:05d}" for i in range(args.policies)])
        cpu: dict[str, list[float]] = {name: [] for name in trees}
        for round_ in range(args.rounds):
            order = list(trees.items())
            if round_ % 2:
                order.reverse()
            for name, tree in order:
                got = run_child(tree, work)
                if got["policies"] != args.policies:
                    raise SystemExit(f"{name} loaded {got['policies']} policies, not {args.policies}")
                cpu[name].append(got["cpu_s"])
                shown = f"CPU {got['cpu_s']:.3f} s  wall {got['wall_s']:.3f} s"
                print(f"round {round_ + 1} {name:<8} {shown}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()
    print(f"\n{args.policies:,} policy files, {args.rounds} rounds; load average {load[0]:.1f} {load[1]:.1f}")
    for name, values in cpu.items():
        shown = ", ".join(f"{v:.2f}" for v in values)
        print(f"  {name:<8} CPU of the first load: median {statistics.median(values):.2f} s ({shown})")
    if "baseline" in cpu:
        ratio = statistics.median(cpu["this"]) / statistics.median(cpu["baseline"])
        print(f"  this / baseline of the medians: x{ratio:.3f}")


if __name__ == "__main__":
    main()
