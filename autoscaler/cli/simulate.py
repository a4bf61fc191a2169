"""``swarm-autoscaler simulate``: replay a traffic trace against a policy, offline."""

from __future__ import annotations

import argparse
import csv
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autoscaler.cli import EXIT_INPUT, EXIT_OK
from autoscaler.core.policy import ScalingPolicy
from autoscaler.core.simulate import SimulationConfig, SimulationResult, simulate
from autoscaler.core.trace import Trace, TraceError, parse_trace
from autoscaler.errors import PolicyError
from autoscaler.policy_sources.loader import load_paths

DESCRIPTION = """\
Replay TRACE.csv against a policy with the real decision engine and print what the
autoscaler would have done: every scale action with its reason, then a summary
(replica-seconds, overload-seconds, scale-ups/downs, max replicas).

TRACE.csv has a header 't,<metric>,...' with one column per policy metric; t is seconds
from 0, each value what the metric source would report for the whole service then (the
latest row with t_row <= t applies). An empty cell or NaN means "no data": a query that
returned no series (a failed read, which counts towards spec.fallback, unless the metric
says emptyAs: zero).

Schedules (spec.schedules) need wall time: --start says when t=0 is, e.g.
--start 2026-12-01T07:00:00Z; without it they are not applied.

Model: the engine runs at t=0 and every --interval seconds; new replicas count as running
--startup-delay seconds after a scale-up; a scale-down takes effect at once."""

EPILOG = """\
example:
  swarm-autoscaler simulate examples/policies/web.yaml --trace examples/traces/step-spike.csv \\
      --interval 5 --startup-delay 10 --output timeline.csv
  swarm-autoscaler simulate policies/web.yaml --trace examples/traces/step-spike.csv \
      --start 2026-12-01T07:00:00Z    # trace second t is 07:00:00 UTC + t, for schedules
exit status: 0 ok, 1 invalid policy or trace, 2 usage error"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="replay a traffic trace against a policy, offline",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("policy_file", metavar="POLICY_FILE", type=Path, help="YAML file with the policy")
    p.add_argument("--trace", required=True, type=Path, metavar="TRACE.csv", help="the traffic trace")
    p.add_argument(
        "--policy", metavar="NAME", help="which policy of POLICY_FILE (needed when it holds several)"
    )
    p.add_argument(
        "--interval", type=_positive, default=5.0, metavar="S", help="evaluation interval (default 5)"
    )
    p.add_argument(
        "--initial-replicas",
        type=int,
        metavar="N",
        help="running replicas at t=0 (default: the policy's minReplicas, at least 1)",
    )
    p.add_argument(
        "--startup-delay",
        type=_non_negative,
        default=10.0,
        metavar="S",
        help="seconds before a new replica counts as running (default 10)",
    )
    p.add_argument(
        "--capacity",
        type=_positive,
        metavar="C",
        help="load one replica can serve, in the first metric's unit, for overload-seconds "
        "(default: the first metric's averageValue target)",
    )
    p.add_argument(
        "--start",
        type=_instant,
        metavar="TIME",
        help="wall time of t=0, ISO 8601 with a UTC offset (2026-12-01T07:00:00Z), so "
        "spec.schedules apply at start + t (default: schedules not applied)",
    )
    p.add_argument("--output", type=Path, metavar="timeline.csv", help="write one CSV row per evaluation")
    p.add_argument("--plot", type=Path, metavar="timeline.png", help="draw load and replicas (matplotlib)")
    p.add_argument("--quiet", action="store_true", help="print only the summary, not every scale action")
    p.set_defaults(handler=run)


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _instant(text: str) -> float:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 time: {text!r} (write e.g. 2026-12-01T07:00:00Z)"
        ) from None
    if at.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no UTC offset; add Z or +01:00 so the schedules' time zones can be applied"
        )
    return at.timestamp()


def _pick_policy(path: Path, name: str | None) -> ScalingPolicy:
    loaded = load_paths([path])
    if not loaded:
        raise PolicyError(f"{path}: no policy found")
    if name is None:
        if len(loaded) > 1:
            names = ", ".join(lp.policy.name for lp in loaded)
            raise PolicyError(f"{path} holds {len(loaded)} policies ({names}); choose one with --policy NAME")
        return loaded[0].policy
    for lp in loaded:
        if lp.policy.name == name:
            return lp.policy
    names = ", ".join(lp.policy.name for lp in loaded)
    raise PolicyError(f"{path}: no policy named {name!r} (it has: {names})")


def run(args: argparse.Namespace) -> int:
    try:
        policy = _pick_policy(args.policy_file, args.policy)
        trace = _read_trace(args.trace, [m.name for m in policy.spec.metrics])
    except PolicyError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_INPUT
    if args.initial_replicas is not None and args.initial_replicas < 0:
        print("error: --initial-replicas must be >= 0", file=sys.stderr)
        return EXIT_INPUT
    config = SimulationConfig(
        interval=args.interval,
        initial_replicas=args.initial_replicas,
        startup_delay=args.startup_delay,
        capacity=args.capacity,
        start=args.start,
    )
    if policy.spec.schedules and args.start is None:
        print(
            f"note: {policy.name} has {len(policy.spec.schedules)} schedule(s), not applied: "
            "give --start TIME to map trace seconds to wall time",
            file=sys.stderr,
        )
    result = simulate(policy.spec, trace, config)
    if not args.quiet:
        _print_actions(result)
    _print_summary(policy, trace, config, result)
    if args.output:
        write_timeline(args.output, trace, result)
        print(f"timeline: {args.output} ({len(result.steps)} rows)")
    if args.plot:
        try:
            from autoscaler.cli.simulate_plot import plot_timeline
        except ImportError as exc:
            print(
                f"error: --plot needs matplotlib ({exc}); pip install 'swarm-autoscaler[plot]'",
                file=sys.stderr,
            )
            return EXIT_INPUT
        plot_timeline(args.plot, policy, trace, result)
        print(f"plot: {args.plot}")
    return EXIT_OK


def _read_trace(path: Path, metric_names: list[str]) -> Trace:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TraceError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_trace(text, where=str(path), expected=metric_names)


def _print_actions(result: SimulationResult) -> None:
    for step in result.steps:
        d = step.decision
        if d.desired != d.current:
            arrow = "up  " if d.desired > d.current else "down"
            print(f"t={step.t:>7g}s {arrow} {d.current:>3} -> {d.desired:<3} {d.reason}")


def _print_summary(
    policy: ScalingPolicy, trace: Trace, config: SimulationConfig, result: SimulationResult
) -> None:
    s = result.summary
    avg = s.replica_seconds / s.duration if s.duration else float(result.steps[0].ready)
    print(
        f"policy {policy.name}: {s.evaluations} evaluations over {s.duration:g} s "
        f"(interval {config.interval:g} s, startup delay {config.startup_delay:g} s)"
    )
    if config.start is not None:
        t0 = datetime.fromtimestamp(config.start, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        print(f"t=0 is {t0}")
    print(f"replica-seconds:  {s.replica_seconds:.0f} (average {avg:.2f} replicas)")
    if s.capacity is None:
        print("overload-seconds: n/a (give --capacity: the first metric has no averageValue target)")
    else:
        first = trace.metric_names and policy.spec.metrics[0].name
        print(f"overload-seconds: {s.overload_seconds:.0f} ({first} above ready x {s.capacity:g})")
    print(f"scale-ups: {s.scale_ups}  scale-downs: {s.scale_downs}  max replicas: {s.max_replicas}")


def write_timeline(path: Path, trace: Trace, result: SimulationResult) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["t", "ready", "starting", "current", "desired", "panic", *trace.metric_names, "limits", "reason"]
        )
        for step in result.steps:
            d = step.decision
            values = ["" if v is None else f"{v:g}" for v in step.values]
            w.writerow(
                [
                    f"{step.t:g}",
                    step.ready,
                    step.starting,
                    d.current,
                    d.desired,
                    int(d.panic),
                    *values,
                    " ".join(d.limits),
                    d.reason,
                ]
            )
