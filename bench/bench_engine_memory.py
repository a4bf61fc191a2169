"""What one engine holds after many steady passes, against the same engine after one (issue 15).

A controller runs for days; ``bench_pass_scaling.py`` measures four passes. Whatever an
engine keeps per pass (recommendation history, scale events, forecaster samples) only
shows after a window's worth of passes: at 5 s passes and HPA's 300 s scale-down
window, 60 of them. Here ``--engines`` engines of one policy (the bench policy of
``bench_full_pass.py``: one metric, HPA's default behavior) see the same steady load
every ``--interval`` seconds of a fake clock; tracemalloc counts what they hold after
pass 1 (the baseline) and after each later checkpoint. The figure that matters is the
growth per engine, times 10,000 services.

Run: ``python bench/bench_engine_memory.py [--engines 500] [--passes 120] [--interval 5]``.
"""

from __future__ import annotations

import argparse
import tracemalloc

from autoscaler.core.decision import MetricReading
from autoscaler.core.engine import Engine
from autoscaler.core.policy import PolicySpec

SPEC = {
    "service": "svc",
    "minReplicas": 0,
    "maxReplicas": 3,
    "metrics": [
        {
            "name": "load",
            "prometheus": {"query": "sum by (service) (app_load)", "seriesLabel": "service"},
            "target": {"averageValue": 10},
        }
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engines", type=int, default=500)
    parser.add_argument("--passes", type=int, default=120)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between passes (fake clock)")
    args = parser.parse_args()
    spec = PolicySpec.model_validate(SPEC)
    readings = {"load": MetricReading("load", 10.0)}  # on target at 1 replica: a steady service
    tracemalloc.start()
    engines = [Engine(spec, now=0.0, current=1) for _ in range(args.engines)]
    baseline = 0
    checkpoints = {1, 3, 12, 60, args.passes}
    print(f"{args.engines} engines, a pass every {args.interval:g} s (fake clock), steady load")
    for index in range(1, args.passes + 1):
        for engine in engines:
            engine.decide(now=index * args.interval, current=1, running=1, readings=readings)
        held = tracemalloc.get_traced_memory()[0] / args.engines
        if index == 1:
            baseline = held
        if index in checkpoints:
            print(
                f"  after {index:4d} passes: {held:7.0f} bytes per engine = x{held / baseline:.2f} "
                f"pass 1; +{(held - baseline) * 10_000 / 2**20:5.1f} MiB at 10,000 services"
            )


if __name__ == "__main__":
    main()
