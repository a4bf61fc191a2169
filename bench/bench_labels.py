"""Policies from labels: the cost of reading 1,000 services' labels, against files, same run.

The controller reads label policies from every pass's service listing; a service's labels
are parsed again only when its ``autoscaler.*`` labels changed. This measures, interleaved
round by round so machine load hits both alike:
- baseline: the same 1,000 policies parsed from one YAML file (``parse_policy_text``), what
  a file-based controller pays on a (re)load;
- first pass: ``LabelPolicies.refresh`` over 1,000 labelled services seen for the first time
  (every label set parsed and validated);
- steady pass: ``refresh`` again with nothing changed (the per-pass cost once cached).

Run: ``python bench/bench_labels.py [--services 1000] [--rounds 5]``. Prints each figure and
its ratio to the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from autoscaler.core.observation import ServiceState
from autoscaler.observability.metrics import ControllerMetrics
from autoscaler.policy_sources.documents import parse_policy_text
from autoscaler.policy_sources.label_export import policy_to_labels
from autoscaler.policy_sources.loader import load_file
from autoscaler.reconciler.label_policies import LabelPolicies

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "policies" / "web.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    example = EXAMPLE.read_text()
    policy = load_file(EXAMPLE)[0].policy
    labels = policy_to_labels(policy)
    names = [f"svc-{i:04d}" for i in range(args.services)]
    stream = "\n---\n".join(
        example.replace("name: web ", f"name: {n} ").replace("service: web ", f"service: {n} ") for n in names
    )
    services = [ServiceState(f"id-{n}", n, 2, 2, 1, 0.0, dict(labels)) for n in names]
    figures: dict[str, list[float]] = {"files": [], "first": [], "steady": []}
    for _ in range(args.rounds):
        started = time.perf_counter()
        places, problems = parse_policy_text(stream, Path("bench.yaml"))
        figures["files"].append(time.perf_counter() - started)
        assert len(places) == args.services and not problems
        source = LabelPolicies(ControllerMetrics(CollectorRegistry()))
        started = time.perf_counter()
        found = source.refresh(services)
        figures["first"].append(time.perf_counter() - started)
        assert len(found) == args.services
        started = time.perf_counter()
        source.refresh(services)
        figures["steady"].append(time.perf_counter() - started)
    base = statistics.median(figures["files"])
    print(f"{args.services} services, {len(labels)} labels each, median of {args.rounds} rounds")
    for key, what in (
        ("files", "baseline: the same policies from one YAML file"),
        ("first", "labels, first pass (all parsed)"),
        ("steady", "labels, next pass (nothing changed)"),
    ):
        median = statistics.median(figures[key])
        print(f"  {what:<48} {median * 1000:8.1f} ms  x{median / base:.2f}")


if __name__ == "__main__":
    main()
