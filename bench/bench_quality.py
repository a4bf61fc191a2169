"""Scaling quality on traces: HPA defaults at 15 s vs our defaults vs ours + predictive.

For each trace, three runs of the real engine through the simulator's replay model (same
capacity per replica, same start-up delay, same initial replicas):
- ``hpa``: the HPA-default reference (``autoscaler.core.hpa_reference``), a decision every 15 s;
- ``ours``: the same metric and bounds with every field of ours at its default, every 5 s;
- ``ours+predictive``: that plus ``predictive: {enabled: true}`` and nothing else.
Printed per trace and contender: overload-seconds (load above ready replicas x capacity)
and replica-seconds, and both as ratios to the HPA run on the same trace. Training traces
(to reason and tune on) are the examples in examples/traces and four NASA-HTTP days of
bench/traces/ that are not held back; held-back traces (to check on, rarely) come from
bench/heldback_traces.py (synthetic) and two other NASA-HTTP days (real-world, see
bench/traces/README.md: per-minute rates, replayed at 200x, linearly interpolated between
minute midpoints, one row per second).

Run: ``python bench/bench_quality.py [--traces training] [--startup-delay 10] [--plot docs/quality.png]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

from autoscaler.core.hpa_reference import simulate_hpa_reference
from autoscaler.core.policy import PolicySpec
from autoscaler.core.simulate import SimulationConfig, SimulationResult, simulate
from autoscaler.core.trace import Trace, parse_trace

sys.path.insert(0, str(Path(__file__).parent))
from heldback_traces import SEED, heldback_csv

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ("step-spike", "ramp", "flash-crowd", "diurnal")
OUR_INTERVAL = 5.0  # the controller's default loop interval (settings: loop.interval)
CONTENDERS = ("hpa", "ours", "ours+predictive")
REAL_WORLD = ("nasa-http-1995-07-06", "nasa-http-1995-07-13")
# Other days of the same server, not held back: the weekday before and after each held-back
# day, picked by that rule before their figures were seen, to reason and tune on real traffic.
REAL_WORLD_TRAINING = (
    "nasa-http-1995-07-05",
    "nasa-http-1995-07-07",
    "nasa-http-1995-07-12",
    "nasa-http-1995-07-14",
)
# The NASA server's 1995 traffic (busiest minute 6.8 req/s) at this many times its volume: up to 28 replicas.
REAL_WORLD_SCALE = 200.0


def base_spec(max_replicas: int, predictive: bool, settings: dict[str, object] | None = None) -> PolicySpec:
    spec: dict[str, object] = {
        "service": "web",
        "minReplicas": 1,
        "maxReplicas": max_replicas,
        "metrics": [
            {
                "name": "requests_per_second",
                "prometheus": {"query": "sum(rate(http_requests_total[1m]))"},
                "target": {"averageValue": 50},
            }
        ],
    }
    if predictive:
        spec["predictive"] = {"enabled": True, **(settings or {})}
    return PolicySpec.model_validate(spec)


@dataclass(frozen=True)
class Row:
    trace: str
    held_back: bool
    results: dict[str, SimulationResult]


def run_trace(
    name: str, trace: Trace, held_back: bool, startup: float, settings: dict[str, object] | None
) -> Row:
    config = SimulationConfig(interval=OUR_INTERVAL, startup_delay=startup, initial_replicas=None)
    ours, predictive = base_spec(100, False), base_spec(100, True, settings)
    return Row(
        name,
        held_back,
        {
            "hpa": simulate_hpa_reference(ours, trace, config),
            "ours": simulate(ours, trace, config),
            "ours+predictive": simulate(predictive, trace, config),
        },
    )


def load_traces(seed: int, which: str = "all") -> list[tuple[str, Trace, bool]]:
    """The traces of ``which``: "training" (examples and REAL_WORLD_TRAINING), "held-back", or "all"."""
    out = []
    if which != "held-back":
        for name in EXAMPLES:
            path = ROOT / "examples" / "traces" / f"{name}.csv"
            out.append((name, parse_trace(path.read_text(encoding="utf-8"), where=str(path)), False))
        out += [(name, real_world(name), False) for name in REAL_WORLD_TRAINING]
    if which != "training":
        for name, text in heldback_csv(seed).items():
            out.append((name, parse_trace(text, where=name), True))
        out += [(name, real_world(name), True) for name in REAL_WORLD]
    return out


def real_world(name: str) -> Trace:
    path = ROOT / "bench" / "traces" / f"{name}.csv"
    minutes = parse_trace(path.read_text(encoding="utf-8"), where=str(path))
    return per_second(minutes, REAL_WORLD_SCALE)


def per_second(minutes: Trace, scale: float) -> Trace:
    """A per-minute trace at ``scale`` times its volume, as a per-second rate all day.

    Replayed as steps, a row per minute would jump at every minute boundary, which no real
    service's load does. The standard reconstruction of a rate from per-interval averages:
    each average stands at its interval's midpoint, linearly interpolated between midpoints,
    held flat before the first and after the last. Each second's row is the mean of that
    line over the second (its value at the second's midpoint); the last row closes the day.
    """
    (name,) = minutes.metric_names
    width = minutes.times[1] - minutes.times[0]
    gaps = {b - a for a, b in zip(minutes.times, minutes.times[1:], strict=False)}
    rates = [v * scale for v in minutes.values[name] if v is not None]
    if gaps != {width} or len(rates) != len(minutes):
        raise ValueError(f"{name}: a real-world trace needs evenly spaced rows, each with a value")
    mids = [t + width / 2 for t in minutes.times]
    times = tuple(float(s) for s in range(int(minutes.times[0]), int(minutes.end + width) + 1))
    return Trace(minutes.metric_names, times, {name: tuple(_on_line(mids, rates, t + 0.5) for t in times)})


def _on_line(xs: list[float], ys: list[float], x: float) -> float:
    """The piecewise-linear curve through (xs, ys) at ``x``, flat beyond its ends."""
    i = bisect_right(xs, x)
    if i == 0:
        return ys[0]
    if i == len(xs):
        return ys[-1]
    frac = (x - xs[i - 1]) / (xs[i] - xs[i - 1])
    return ys[i - 1] + frac * (ys[i] - ys[i - 1])


def ratio(a: float, b: float, digits: int = 2) -> str:
    return f"{a / b:.{digits}f}x" if b > 0 else ("=" if a == 0 else "inf")


def print_table(rows: list[Row]) -> None:
    print(
        f"| trace | set | {' | '.join(f'{c} overload-s / replica-s' for c in CONTENDERS)} "
        "| ours vs hpa (over, rep) | +predictive vs hpa (over, rep) |"
    )
    print("|---|---|" + "---|" * len(CONTENDERS) + "---|---|")
    for row in rows:
        s = {c: row.results[c].summary for c in CONTENDERS}
        hpa = s["hpa"]
        cells = [f"{s[c].overload_seconds:.0f} / {s[c].replica_seconds:.0f}" for c in CONTENDERS]
        vs = [
            f"{ratio(s[c].overload_seconds, hpa.overload_seconds)}, "
            f"{ratio(s[c].replica_seconds, hpa.replica_seconds)}"
            for c in ("ours", "ours+predictive")
        ]
        print(
            f"| {row.trace} | {'held back' if row.held_back else 'training'} "
            f"| {' | '.join(cells)} | {' | '.join(vs)} |"
        )
    groups = (
        ("examples", [r for r in rows if r.trace in EXAMPLES]),
        ("training, real-world", [r for r in rows if r.trace in REAL_WORLD_TRAINING]),
        ("training", [r for r in rows if not r.held_back]),
        ("held back, synthetic", [r for r in rows if r.held_back and r.trace not in REAL_WORLD]),
        ("held back, real-world", [r for r in rows if r.trace in REAL_WORLD]),
        ("held back", [r for r in rows if r.held_back]),
    )
    for label, picked in groups:
        tot = {
            c: (
                sum(r.results[c].summary.overload_seconds for r in picked),
                sum(r.results[c].summary.replica_seconds for r in picked),
            )
            for c in CONTENDERS
        }
        hpa = tot["hpa"]
        if not picked:
            continue
        print(
            f"| **all {label}** | | "
            + " | ".join(f"{o:.0f} / {r:.0f}" for o, r in (tot[c] for c in CONTENDERS))
            + " | "
            + " | ".join(
                f"{ratio(tot[c][0], hpa[0])}, {ratio(tot[c][1], hpa[1], 3)}"
                for c in ("ours", "ours+predictive")
            )
            + " |"
        )


def plot(rows: list[Row], traces: dict[str, Trace], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 2.2 * len(rows)))
    for ax, row in zip(axes, rows, strict=True):
        trace = traces[row.trace]
        cap = row.results["hpa"].summary.capacity or 1.0
        ax.step(
            trace.times,
            [(v or 0.0) / cap for v in trace.values["requests_per_second"]],
            where="post",
            color="0.6",
            lw=0.8,
            label="load / capacity",
        )
        for c, color in zip(CONTENDERS, ("tab:red", "tab:blue", "tab:green"), strict=True):
            steps = row.results[c].steps
            ax.step(
                [st.t for st in steps],
                [st.ready for st in steps],
                where="post",
                lw=1,
                color=color,
                label=f"{c} ready",
            )
        ax.set_title(row.trace, fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--startup-delay", type=float, default=10.0, help="seconds before a new replica serves"
    )
    parser.add_argument(
        "--predictive",
        type=json.loads,
        default={},
        metavar="JSON",
        help='settings beside enabled: true for the third run, e.g. \'{"method": "holt"}\' (default: none)',
    )
    parser.add_argument(
        "--seed", type=int, default=SEED, help=f"held-back generator seed (default {SEED}, the recorded one)"
    )
    parser.add_argument(
        "--traces",
        choices=("all", "training", "held-back"),
        default="all",
        help="which traces to replay: tune on 'training', check 'held-back' (default: all)",
    )
    parser.add_argument("--plot", type=Path, help="write a PNG of load and ready replicas per trace")
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="TREE",
        help="also replay 'ours' with the engine of another checkout (predictive off: no worse than before?)",
    )
    args = parser.parse_args()
    traces = load_traces(args.seed, args.traces)
    rows = [run_trace(name, trace, held, args.startup_delay, args.predictive) for name, trace, held in traces]
    print(
        f"replay model: capacity 50 req/s per replica, start-up delay {args.startup_delay:g} s, "
        f"ours every {OUR_INTERVAL:g} s, hpa every 15 s; predictive: enabled {json.dumps(args.predictive)}"
    )
    print_table(rows)
    if args.plot:
        plot(rows, {n: t for n, t, _ in traces}, args.plot)
        print(f"plot: {args.plot}")
    if args.baseline:
        print_baseline(rows, traces, args.baseline, args.startup_delay)


def print_baseline(
    rows: list[Row], traces: list[tuple[str, Trace, bool]], tree: Path, startup: float
) -> None:
    """'ours' of this tree against 'ours' of ``tree``, same traces and replay (replay_ours.py)."""
    with tempfile.TemporaryDirectory() as work:
        for name, trace, _ in traces:
            (metric,) = trace.metric_names
            lines = [f"t,{metric}"] + [
                f"{t!r},{'' if v is None else repr(v)}"
                for t, v in zip(trace.times, trace.values[metric], strict=True)
            ]
            (Path(work) / f"{name}.csv").write_text("\n".join(lines) + "\n")
        spec = base_spec(100, False).model_dump(mode="json", by_alias=True, exclude_defaults=True)
        (Path(work) / "spec.json").write_text(json.dumps(spec))
        child = [
            sys.executable,
            str(Path(__file__).with_name("replay_ours.py")),
            work,
            str(startup),
            str(OUR_INTERVAL),
        ]
        env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
        theirs = json.loads(
            subprocess.run(child, env=env, cwd="/", capture_output=True, text=True, check=True).stdout
        )
    print(f"\nours (predictive off) here vs ours in {tree}: overload-seconds, replica-seconds")
    for label, held in (("training", False), ("held back", True)):
        picked = [r for r in rows if r.held_back == held]
        if not picked:
            continue
        here = [
            sum(r.results["ours"].summary.overload_seconds for r in picked),
            sum(r.results["ours"].summary.replica_seconds for r in picked),
        ]
        there = [sum(theirs[r.trace][0] for r in picked), sum(theirs[r.trace][1] for r in picked)]
        print(
            f"  all {label}: {here[0]:.0f} / {here[1]:.0f} vs {there[0]:.0f} / {there[1]:.0f}"
            f" = {ratio(here[0], there[0], 3)}, {ratio(here[1], there[1], 4)}"
        )


if __name__ == "__main__":
    main()
