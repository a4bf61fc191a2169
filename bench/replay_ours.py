"""Child of ``bench_quality.py --baseline``: "ours" (every field at its default) on CSV traces.

Run with ``PYTHONPATH`` at another checkout, it replays that tree's engine through that
tree's simulator, so "predictive off, no worse than before" is measured in the same run
as today's figures. Only the core's oldest, stable names are imported (policy, simulate,
trace), so a tree from before issue 14 runs it too. Prints one JSON object: trace name ->
[overload-seconds, replica-seconds].

Usage: PYTHONPATH=/path/to/tree python bench/replay_ours.py DIR STARTUP_DELAY INTERVAL
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from autoscaler.core.policy import PolicySpec
from autoscaler.core.simulate import SimulationConfig, simulate
from autoscaler.core.trace import parse_trace


def main() -> None:
    directory, startup, interval = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    spec = json.loads((directory / "spec.json").read_text())
    policy = PolicySpec.model_validate(spec)
    config = SimulationConfig(interval=interval, startup_delay=startup, initial_replicas=None)
    out = {}
    for path in sorted(directory.glob("*.csv")):
        summary = simulate(policy, parse_trace(path.read_text(), where=str(path)), config).summary
        out[path.stem] = [summary.overload_seconds, summary.replica_seconds]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
