"""How fast does `simulate` replay a day at one-second resolution?

Goal (issue 2): a 24 h trace at 1 s resolution (86,400 rows) in well under 2 s on one core.
Baseline, measured in the same run: parsing the same trace text, the work any replay
must do at least once. The ratio shows what the engine and the timeline integration add.

Run: python bench/bench_simulate.py [--rows 86400] [--interval 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import random
import time

from autoscaler.core.policy import PolicySpec
from autoscaler.core.simulate import SimulationConfig, simulate
from autoscaler.core.trace import parse_trace

SPEC = PolicySpec.model_validate(
    {
        "service": "web",
        "minReplicas": 2,
        "maxReplicas": 50,
        "metrics": [{"name": "rps", "prometheus": {"query": "x"}, "target": {"averageValue": 50}}],
    }
)


def day_trace(rows: int) -> str:
    rng = random.Random(7)
    lines = ["t,rps"]
    for t in range(rows):
        base = 450 - 350 * math.cos(2 * math.pi * t / 86400)
        lines.append(f"{t},{base * (1 + rng.uniform(-0.1, 0.1)):.1f}")
    return "\n".join(lines) + "\n"


def best_of(repeat: int, fn: object) -> float:
    assert callable(fn)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=86_400)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    text = day_trace(args.rows)
    trace = parse_trace(text)
    config = SimulationConfig(interval=args.interval)
    parse_s = best_of(args.repeat, lambda: parse_trace(text))
    sim_s = best_of(args.repeat, lambda: simulate(SPEC, trace, config))
    result = simulate(SPEC, trace, config)
    print(
        f"trace: {args.rows} rows, {trace.end:g} s; interval {args.interval:g} s -> "
        f"{result.summary.evaluations} evaluations, {result.summary.scale_ups} ups, "
        f"{result.summary.scale_downs} downs"
    )
    print(f"baseline parse_trace:      {parse_s * 1000:8.1f} ms")
    print(f"simulate (engine+timeline): {sim_s * 1000:8.1f} ms  = {sim_s / parse_s:.2f}x the parse baseline")
    print(f"parse + simulate:          {(parse_s + sim_s) * 1000:8.1f} ms  (goal: well under 2000 ms)")
    print(f"per evaluation:            {sim_s / result.summary.evaluations * 1e6:8.1f} us")


if __name__ == "__main__":
    main()
