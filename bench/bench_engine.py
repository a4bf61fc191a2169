"""Decision cost for 1,000 policies per tick, against a baseline measured in the same run.

The issue's goal: one tick of 1,000 policies in under 10 ms, i.e. ~10 µs per decide().
Two references are measured in the same run, interleaved tick by tick with the engine:
- baseline: the least any engine must compute, a dict lookup and ceil(value / target);
- floor: the least any engine returning this API must build, one MetricRecommendation
  per metric and one Decision with a short reason, through their normal constructors.
The ratios engine / reference stay comparable across machines and load; the absolute
figures are printed against the 10 ms goal. CPU time (thread_time) is reported beside
wall time because a shared machine's load inflates wall time unevenly.

Load: each policy sees a sine wave with its own phase and period, sampled every 15 s
(HPA's sync period), so ticks mix steady, scale-up, stabilized and rate-limited paths.
Run: ``python bench/bench_engine.py [--policies 1000] [--ticks 200] [--metrics 1]``.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import time

from autoscaler.core.decision import Decision, MetricReading, MetricRecommendation
from autoscaler.core.engine import Engine
from autoscaler.core.policy import PolicySpec

INTERVAL = 15.0
TARGET = 50.0


def make_spec(metrics: int, predictive: bool = False) -> PolicySpec:
    return PolicySpec.model_validate(
        {
            "predictive": {"enabled": predictive},
            "service": "svc",
            "minReplicas": 1,
            "maxReplicas": 50,
            "metrics": [
                {"name": f"m{i}", "prometheus": {"query": "q"}, "target": {"averageValue": TARGET}}
                for i in range(metrics)
            ],
        }
    )


def make_loads(
    policies: int, ticks: int, metrics: int, seed: int, interval: float = INTERVAL
) -> list[list[dict[str, MetricReading]]]:
    """Readings per tick per policy, built before timing so only decisions are timed."""
    rng = random.Random(seed)
    shapes = [
        (rng.uniform(0, 2 * math.pi), rng.uniform(300, 3600), rng.uniform(50, 1500)) for _ in range(policies)
    ]
    names = [f"m{i}" for i in range(metrics)]
    loads = []
    for k in range(ticks):
        t = k * interval
        row = []
        for phase, period, peak in shapes:
            v = peak * (1.1 + math.sin(phase + 2 * math.pi * t / period)) / 2.1
            row.append({n: MetricReading(n, v * (1 + 0.1 * j)) for j, n in enumerate(names)})
        loads.append(row)
    return loads


def contract_floor(now: float, current: int, readings: dict[str, MetricReading]) -> Decision:
    """What any engine returning this API pays per policy: one MetricRecommendation per
    metric with a reason, one Decision."""
    recs = []
    best = 0
    for r in readings.values():
        v = r.value if r.value is not None else 0.0
        desired = math.ceil(v / TARGET)
        best = max(best, desired)
        recs.append(
            MetricRecommendation(r.name, v, desired, f"{r.name} {v:.4g} vs target {TARGET:g} -> {desired}")
        )
    return Decision(now, current, current, best, best, recs[0].reason, False, tuple(recs), ())


def decide_all(
    engines: list[Engine], current: list[int], now: float, row: list[dict[str, MetricReading]]
) -> None:
    """One tick of every engine, scaling as decided (``current`` is updated in place)."""
    for i, engine in enumerate(engines):
        d = engine.decide(now=now, current=current[i], running=current[i], readings=row[i])
        if d.desired != current[i]:
            engine.record_scale(at=now, from_replicas=current[i], to_replicas=d.desired)
            current[i] = d.desired


def run(
    spec: PolicySpec,
    loads: list[list[dict[str, MetricReading]]],
    predictive: PolicySpec | None = None,
    interval: float = INTERVAL,
) -> dict[str, list[tuple[float, float]]]:
    """Per tick, (wall seconds, CPU seconds) of each contender over all policies.

    The three contenders run back to back inside every tick so they see the same load
    from whatever else this machine is doing; CPU time (``thread_time``) is what the
    work costs, wall time what a tick takes here and now.
    """
    policies = len(loads[0])
    engines = [Engine(spec, now=0.0, current=1) for _ in range(policies)]
    current = [1] * policies
    out: dict[str, list[tuple[float, float]]] = {"baseline": [], "floor": [], "engine": [], "predictive": []}
    # The same engine with spec.predictive on (history, forecast and its reason every tick).
    forecasting = [Engine(predictive, now=0.0, current=1) for _ in range(policies)] if predictive else []
    current_p = [1] * policies
    sink = 0
    for k, row in enumerate(loads):
        now = k * interval

        w, c = time.perf_counter(), time.thread_time()
        for readings in row:
            for r in readings.values():
                if r.value is not None:
                    sink += math.ceil(r.value / TARGET)
        out["baseline"].append((time.perf_counter() - w, time.thread_time() - c))

        w, c = time.perf_counter(), time.thread_time()
        for i, readings in enumerate(row):
            sink += contract_floor(now, current[i], readings).desired
        out["floor"].append((time.perf_counter() - w, time.thread_time() - c))

        w, c = time.perf_counter(), time.thread_time()
        decide_all(engines, current, now, row)
        out["engine"].append((time.perf_counter() - w, time.thread_time() - c))

        if forecasting:
            w, c = time.perf_counter(), time.thread_time()
            decide_all(forecasting, current_p, now, row)
            out["predictive"].append((time.perf_counter() - w, time.thread_time() - c))
    out["scales"] = [(float(sum(current)), float(sink))]  # keeps the work observable
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--metrics", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--interval", type=float, default=INTERVAL, help="seconds between ticks")
    parser.add_argument(
        "--predictive", action="store_true", help="also time the engine with spec.predictive enabled"
    )
    args = parser.parse_args()

    spec = make_spec(args.metrics)
    forecasting = make_spec(args.metrics, predictive=True) if args.predictive else None
    loads = make_loads(args.policies, args.ticks, args.metrics, args.seed, args.interval)
    run(spec, loads[:5], forecasting, args.interval)  # warm-up: allocator, caches, lazily built code
    res = run(spec, loads, forecasting, args.interval)
    n = args.policies
    print(
        f"policies={n} ticks={args.ticks} metrics/policy={args.metrics} interval={args.interval:g}s "
        f"load={os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'':10}{'CPU/tick med':>14}{'CPU/tick min':>14}{'wall/tick med':>15}"
        f"{'wall p99':>11}{'CPU/decide':>12}"
    )
    for name in ("baseline", "floor", "engine", "predictive"):
        if not res[name]:
            continue
        wall = sorted(t[0] for t in res[name])
        cpu = sorted(t[1] for t in res[name])
        print(
            f"{name:10}{statistics.median(cpu) * 1e3:11.3f} ms{cpu[0] * 1e3:11.3f} ms"
            f"{statistics.median(wall) * 1e3:12.3f} ms"
            f"{wall[int(0.99 * (len(wall) - 1))] * 1e3:8.3f} ms{statistics.median(cpu) / n * 1e6:9.2f} µs"
        )
    ratios = {
        ref: statistics.median(e[1] / b[1] for e, b in zip(res["engine"], res[ref], strict=True) if b[1] > 0)
        for ref in ("baseline", "floor")
    }
    print(f"engine / baseline (median of per-tick CPU ratios): {ratios['baseline']:.1f}x")
    print(f"engine / floor    (median of per-tick CPU ratios): {ratios['floor']:.1f}x")
    per_tick = statistics.median(t[1] for t in res["engine"]) / n * 1000
    print(f"scaled to 1,000 policies: {per_tick * 1e3:.2f} ms CPU per tick (goal < 10 ms)")
    if res["predictive"]:
        extra = statistics.median(
            p[1] / e[1] for p, e in zip(res["predictive"], res["engine"], strict=True) if e[1] > 0
        )
        cost = statistics.median(p[1] - e[1] for p, e in zip(res["predictive"], res["engine"], strict=True))
        print(
            f"predictive / engine (median of per-tick CPU ratios): {extra:.2f}x; "
            f"forecasting adds {cost / n * 1e6:.2f} µs per decide, {cost * 1e3:.2f} ms per tick of {n}"
        )


if __name__ == "__main__":
    main()
