"""``swarm-autoscaler simulate``: replay a traffic trace against a policy, offline."""

from __future__ import annotations

import argparse
import csv
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from autoscaler.cli import EXIT_INPUT, EXIT_OK
from autoscaler.core.hpa_reference import simulate_hpa_reference
from autoscaler.core.policy import ScalingPolicy
from autoscaler.core.simulate import SimulationConfig, SimulationResult, simulate
from autoscaler.core.trace import Trace, TraceError, parse_trace
from autoscaler.errors import PermanentSourceError, PolicyError
from autoscaler.policy_sources.loader import load_paths
from autoscaler.sources.prometheus_range import read_trace

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

Instead of a CSV, --from-prometheus URL --start T --end T replays real history: the
policy's own queries, filled in for its service, read as range queries every --step.

Model: the engine runs at t=0 and every --interval seconds; new replicas count as running
--startup-delay seconds after a scale-up; a scale-down takes effect at once.
--compare hpa adds an HPA-default run on the same trace (decisions every 15 s)."""

EPILOG = """\
example:
  swarm-autoscaler simulate examples/policies/web.yaml --trace examples/traces/step-spike.csv \\
      --interval 5 --startup-delay 10 --output timeline.csv
  swarm-autoscaler simulate examples/policies/web.yaml --trace examples/traces/step-spike.csv \\
      --start 2026-12-01T07:00:00Z    # trace second t is 07:00:00 UTC + t, for schedules
  swarm-autoscaler simulate examples/policies/web.yaml --from-prometheus http://prometheus:9090 \\
      --start 2026-11-30T08:00:00Z --end 2026-11-30T12:00:00Z --step 15s --compare hpa
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
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--trace", type=Path, metavar="TRACE.csv", help="the traffic trace")
    source.add_argument(
        "--from-prometheus",
        metavar="URL",
        help="read the policy's queries over --start..--end from this Prometheus instead",
    )
    p.add_argument(
        "--start",
        type=_when,
        metavar="T",
        help="wall time of t=0, so spec.schedules apply at start + t (default with --trace: schedules "
        "not applied); with --from-prometheus the range's start. RFC 3339 with an offset "
        "(2026-12-01T07:00:00Z), Unix seconds, or now-1h",
    )
    p.add_argument("--end", type=_when, metavar="T", help="with --from-prometheus: as --start (default: now)")
    p.add_argument(
        "--step",
        type=_duration,
        default=5.0,
        metavar="5s",
        help="with --from-prometheus: resolution (default 5s)",
    )
    p.add_argument(
        "--service", metavar="NAME", help="with --from-prometheus: the service, for a policy with a selector"
    )
    p.add_argument(
        "--compare",
        choices=["hpa"],
        help="also replay an HPA-default reference (15 s sync period) and print both summaries",
    )
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


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _duration(text: str) -> float:
    """``5s``, ``2m``, ``1h``, ``1d`` or plain seconds."""
    number, unit = (text[:-1], text[-1]) if text[-1:] in _UNITS else (text, "s")
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (examples: 15, 5s, 2m, 1h)") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _when(text: str) -> datetime:
    """RFC 3339 with an offset (``2026-11-30T08:00:00Z``), Unix seconds, ``now`` or ``now-<duration>``."""
    now = datetime.now(tz=UTC)
    if text == "now":
        return now
    if text.startswith("now-"):
        return now - timedelta(seconds=_duration(text[4:]))
    try:
        return datetime.fromtimestamp(float(text), tz=UTC)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (examples: 2026-11-30T08:00:00Z, 1764489600, now-2h)"
        ) from None
    if parsed.tzinfo is None:  # the schedules' time zones need an instant, not a local reading
        raise argparse.ArgumentTypeError(
            f"{text!r} has no UTC offset; add Z or +01:00 (e.g. 2026-11-30T08:00:00Z)"
        )
    return parsed


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
        if args.trace is not None:
            trace = _read_trace(args.trace, [m.name for m in policy.spec.metrics])
        else:
            trace = _read_prometheus(args, policy)
    except PolicyError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_INPUT
    except PermanentSourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    if args.initial_replicas is not None and args.initial_replicas < 0:
        print("error: --initial-replicas must be >= 0", file=sys.stderr)
        return EXIT_INPUT
    config = SimulationConfig(
        interval=args.interval,
        initial_replicas=args.initial_replicas,
        startup_delay=args.startup_delay,
        capacity=args.capacity,
        start=None if args.start is None else args.start.timestamp(),
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
    if args.compare == "hpa":
        hpa = simulate_hpa_reference(policy.spec, trace, config)
        _print_comparison(result, hpa)
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


def _read_prometheus(args: argparse.Namespace, policy: ScalingPolicy) -> Trace:
    if args.start is None:
        raise PermanentSourceError("--from-prometheus needs --start (and --end, default now)")
    service = args.service or policy.spec.service
    if service is None:
        raise PermanentSourceError(
            f"policy {policy.name} matches services by selector: name the one to replay with --service"
        )
    end = args.end or datetime.now(tz=UTC)
    trace = read_trace(args.from_prometheus, policy.spec, service, start=args.start, end=end, step=args.step)
    print(
        f"read {len(trace)} steps of {service} from {args.from_prometheus} "
        f"({args.start.isoformat()} .. {end.isoformat()}, step {args.step:g} s)"
    )
    return trace


def _print_comparison(ours: SimulationResult, hpa: SimulationResult) -> None:
    """Both runs side by side, and ours as a ratio of the HPA reference."""
    a, b = ours.summary, hpa.summary

    def ratio(x: float, y: float) -> str:
        return f"{x / y:.2f}x" if y > 0 else ("-" if x == 0 else "inf")

    print(f"{'':18}{'this policy':>14}{'hpa defaults':>14}{'ratio':>8}")
    print(
        f"{'replica-seconds':18}{a.replica_seconds:14.0f}{b.replica_seconds:14.0f}"
        f"{ratio(a.replica_seconds, b.replica_seconds):>8}"
    )
    if a.capacity is not None:
        print(
            f"{'overload-seconds':18}{a.overload_seconds:14.0f}{b.overload_seconds:14.0f}"
            f"{ratio(a.overload_seconds, b.overload_seconds):>8}"
        )
    events_a, events_b = a.scale_ups + a.scale_downs, b.scale_ups + b.scale_downs
    print(f"{'scale events':18}{events_a:14d}{events_b:14d}{ratio(events_a, events_b):>8}")
    print(f"{'max replicas':18}{a.max_replicas:14d}{b.max_replicas:14d}")


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
    # With spec.predictive, a <metric>_forecast column per metric (empty when not used).
    predictive = any(step.decision.forecasts for step in result.steps)
    forecast_names = [f"{n}_forecast" for n in trace.metric_names] if predictive else []
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "t", "ready", "starting", "current", "desired", "panic",
                *trace.metric_names, *forecast_names, "limits", "reason",
            ]
        )  # fmt: skip
        for step in result.steps:
            d = step.decision
            values = ["" if v is None else f"{v:g}" for v in step.values]
            forecasts = {f.metric: f.value for f in d.forecasts}
            predicted = ["" if forecasts.get(n) is None else f"{forecasts[n]:g}" for n in trace.metric_names]
            w.writerow(
                [
                    f"{step.t:g}",
                    step.ready,
                    step.starting,
                    d.current,
                    d.desired,
                    int(d.panic),
                    *values,
                    *(predicted if predictive else []),
                    " ".join(d.limits),
                    d.reason,
                ]
            )
