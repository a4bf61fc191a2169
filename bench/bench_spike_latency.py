"""Spike-to-scale latency of the real controller on the lab, compared with its interval.

A sample web service runs at a steady load; a second load generator then adds a spike.
For each spike this measures, on one host clock:

- load -> action: from the spike load generator's task running (Docker's timestamp) to the
  controller's scale-up call (its JSON log line for the action);
- Prometheus -> action: from the first instant Prometheus, evaluating the policy's own
  query every 0.1 s, puts the rate above the scale-up threshold, to the same action;
- evaluations: the controller's decisions on the service between those two instants.

The baseline measured in the same run is the Prometheus lag (load -> crossing): the part
of the latency no controller interval can remove. The goal is Prometheus -> action <= one
interval (the next pass after the data is there scales). Figures go to docs/benchmarks.md.

    python bench/bench_spike_latency.py [--intervals 1 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# The controller helpers are test code shared with tests/integration/test_controller_*.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from controller_helpers import (
    TOLERANCE,
    ControllerProcess,
    LabServices,
    PolicyFile,
    log_time,
    prometheus_series,
    rate_of,
    unique,
)
from timing import wait_until

from autoscaler.targets.swarm import parse_timestamp
from swarm_lab import sessions

SERIES_STEP = 0.1  # seconds between the evaluations that locate the threshold crossing


@dataclass(frozen=True, slots=True)
class Spike:
    interval: float
    load_to_action: float
    crossing_to_action: float
    prometheus_lag: float  # load -> crossing
    evaluations: int
    scaled: str


def task_running_since(services: LabServices, name: str) -> float:
    """When Docker saw the service's (single) task running."""
    tasks = services.service(name).tasks(filters={"desired-state": "running"})
    running = [t for t in tasks if t["Status"]["State"] == "running"]
    if not running:
        raise RuntimeError(f"{name} has no running task")
    return parse_timestamp(running[0]["Status"]["Timestamp"])


TERMINAL_TASK_STATES = {"shutdown", "complete", "failed", "rejected", "orphaned", "remove"}


def settle(controller: ControllerProcess, services: LabServices, web: str, replicas: int, rps: float) -> None:
    """Wait until ``web`` runs ``replicas`` tasks, the controller reads about ``rps``, and its
    passes on ``web`` come from the ticker alone.

    Task events (replicas of the last scale-down still stopping) wake extra passes; a
    spike landing among them would measure the event nudges, not the interval.
    """

    def tick_driven() -> bool:
        times = [log_time(d) for d in controller.events("decision", web)][-3:]
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        return len(gaps) == 2 and all(gap >= 0.9 * controller.interval for gap in gaps)

    def settled() -> bool:
        record = controller.record(web)
        if not record or not record.get("decision"):
            return False
        value = record["decision"]["metrics"][0]["value"]
        in_transition = [
            t
            for t in services.service(web).tasks()
            if t["DesiredState"] != "running" and t["Status"]["State"] not in TERMINAL_TASK_STATES
        ]
        return (
            record["current"] == replicas
            and record["running"] == replicas
            and value is not None
            and abs(value - rps) <= 0.3 * rps
            and not in_transition
            and tick_driven()
        )

    wait_until(settled, deadline=180, what=f"{web} settled at {replicas} replicas, ~{rps:g} req/s", every=0.5)


def one_spike(
    controller: ControllerProcess,
    services: LabServices,
    lab_prometheus: str,
    web: str,
    policy: PolicyFile,
    base_replicas: int,
    spike_rps: float,
    round_no: int,
) -> Spike:
    started = time.time()
    spike = services.load(web, rps=spike_rps, name=f"{web}-spike{round_no}")
    action = controller.wait_action(
        web, since=started, deadline=120, to=lambda old, new: new > old, what="up on the spike"
    )
    acted_at = log_time(action)
    load_at = task_running_since(services, spike)
    series = prometheus_series(lab_prometheus, rate_of(web), started - 2, acted_at + SERIES_STEP, SERIES_STEP)
    crossed = [t for t, value in series if policy.scales_up_at(value, running=base_replicas)]
    if not crossed:
        raise RuntimeError(f"Prometheus never crossed the scale-up threshold before the action: {series}")
    crossed_at = crossed[0]
    # From one step before the crossing: the decision whose query first saw it may precede
    # the step that caught it by less than a step.
    evaluations = [
        d
        for d in controller.events("decision", web, since=crossed_at - SERIES_STEP)
        if log_time(d) <= acted_at
    ]
    services.remove(spike)
    return Spike(
        interval=controller.interval,
        load_to_action=acted_at - load_at,
        crossing_to_action=acted_at - crossed_at,
        prometheus_lag=crossed_at - load_at,
        evaluations=len(evaluations),
        scaled=f"{action['from']} -> {action['to']}",
    )


def run_interval(args: argparse.Namespace, lab: sessions.LabHandle, interval: float) -> list[Spike]:
    services = LabServices(lab.manager_url, lab.images)
    workdir = Path(tempfile.mkdtemp(prefix="bench-spike-"))
    web = unique("bench-spike")
    policy = PolicyFile(web, min_replicas=1, max_replicas=8, scale_down_window=args.scale_down_window)
    base_replicas = math.ceil(args.base_rps / policy.per_replica_rps)
    controller: ControllerProcess | None = None
    try:
        services.web(web, replicas=base_replicas)
        services.load(web, rps=args.base_rps)
        policy.write(workdir)
        controller = ControllerProcess(
            policies=workdir,
            docker_host=lab.manager_url,
            prometheus_url=lab.prometheus_url,
            workdir=workdir,
            interval=interval,
        )
        spikes = []
        for round_no in range(1, args.rounds + 1):
            settle(controller, services, web, base_replicas, args.base_rps)
            spike = one_spike(
                controller,
                services,
                lab.prometheus_url,
                web,
                policy,
                base_replicas,
                args.spike_rps - args.base_rps,
                round_no,
            )
            print(
                f"interval {interval:g} s round {round_no}: load->action {spike.load_to_action:5.2f} s, "
                f"Prometheus->action {spike.crossing_to_action:5.2f} s "
                f"({spike.crossing_to_action / interval:.2f} x interval, {spike.evaluations} evaluation(s)), "
                f"Prometheus lag {spike.prometheus_lag:5.2f} s, scaled {spike.scaled}",
                flush=True,
            )
            spikes.append(spike)
        return spikes
    finally:
        if controller is not None:
            controller.stop()
        services.remove_all()


def summary(spikes: list[Spike]) -> None:
    print("\n| interval | spikes | load -> action median (max) | Prometheus -> action median (max) "
          "| median / interval | evaluations (max) | Prometheus lag median (baseline) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for interval in sorted({s.interval for s in spikes}):
        group = [s for s in spikes if s.interval == interval]
        load = [s.load_to_action for s in group]
        cross = [s.crossing_to_action for s in group]
        lag = statistics.median(s.prometheus_lag for s in group)
        print(
            f"| {interval:g} s | {len(group)} | {statistics.median(load):.2f} s ({max(load):.2f}) "
            f"| {statistics.median(cross):.2f} s ({max(cross):.2f}) "
            f"| {statistics.median(cross) / interval:.2f} | {max(s.evaluations for s in group)} "
            f"| {lag:.2f} s |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--intervals", type=float, nargs="+", default=[1.0, 2.0], metavar="SECONDS")
    parser.add_argument("--rounds", type=int, default=3, help="spikes per interval")
    parser.add_argument(
        "--base-rps", type=float, default=8.0, help="below one replica's target, so noise never scales"
    )
    parser.add_argument("--spike-rps", type=float, default=50.0, help="total offered load during a spike")
    parser.add_argument("--scale-down-window", type=int, default=8)
    args = parser.parse_args()
    if args.spike_rps <= args.base_rps * (1 + TOLERANCE):
        parser.error("--spike-rps must exceed --base-rps by more than the 10 % tolerance")

    info, _ = sessions.acquire(node_count=3)
    try:
        lab = sessions.LabHandle(info)
        spikes = [s for interval in args.intervals for s in run_interval(args, lab, interval)]
    finally:
        sessions.release()
    summary(spikes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
