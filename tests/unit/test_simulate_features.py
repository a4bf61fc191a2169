"""simulate honours issue 13's features: --start for schedules, empty cells for fallback and emptyAs."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from test_simulate import spec as simulate_spec

from autoscaler.cli import main
from autoscaler.core.policy import PolicySpec
from autoscaler.core.simulate import SimulationConfig, simulate
from autoscaler.core.trace import parse_trace


def spec(**overrides: Any) -> PolicySpec:
    return simulate_spec(**{"maxReplicas": 20, **overrides})


def flat(value: str, seconds: int, step: int = 5) -> str:
    return "t,rps\n" + "".join(f"{t},{value}\n" for t in range(0, seconds + 1, step))


def test_start_maps_trace_seconds_to_wall_time_for_schedules() -> None:
    window = {"name": "morning", "start": "5 7 * * *", "end": "10 7 * * *", "minReplicas": 5}
    trace = parse_trace(flat("10", 900))
    start = datetime.fromisoformat("2026-12-01T07:00:00Z").timestamp()
    result = simulate(spec(schedules=[window]), trace, SimulationConfig(start=start, startup_delay=0))
    desired = {s.t: s.decision.desired for s in result.steps}
    assert desired[295] == 1 and desired[300] == 5  # 07:05:00 opens the window
    assert desired[595] == 5
    # Closed at 07:10. The metrics recommended 1 all along (the floor is a bound, not a
    # recommendation, as HPA's minReplicas), so the scale-down window holds nothing back.
    assert desired[600] == 1
    plain = simulate(spec(schedules=[window]), trace, SimulationConfig(startup_delay=0))
    assert all(s.decision.desired == 1 for s in plain.steps)


def test_empty_cells_are_failed_reads_that_reach_the_fallback() -> None:
    policy = spec(fallback={"failureThreshold": 2, "replicas": 6})
    result = simulate(policy, parse_trace(flat("", 30)), SimulationConfig(initial_replicas=2))
    assert [s.decision.desired for s in result.steps[:4]] == [2, 2, 6, 6]
    assert "Fallback" in result.steps[2].decision.limits


def test_empty_cells_read_as_zero_with_empty_as_zero_and_activation() -> None:
    metric = {
        "name": "rps",
        "prometheus": {"query": "q"},
        "target": {"averageValue": 10},
        "activationValue": 0.5,
        "emptyAs": "zero",
    }
    policy = spec(minReplicas=0, metrics=[metric], scaleToZeroAfterSeconds=60)
    trace = parse_trace("t,rps\n0,\n100,3\n200,\n300,\n")
    result = simulate(policy, trace, SimulationConfig(initial_replicas=1, startup_delay=0))
    desired = {s.t: s.decision.desired for s in result.steps}
    assert desired[55] == 1 and desired[60] == 0  # idle since the start, 60 s grace
    assert desired[100] == 1  # woken by 3 > 0.5
    assert desired[250] == 1 and desired[255] == 0  # last active at t=195, + 60 s


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


POLICY = """\
apiVersion: autoscaler.swarm/v1
kind: ScalingPolicy
metadata:
  name: sched
spec:
  service: web
  maxReplicas: 20
  metrics:
    - name: rps
      prometheus:
        query: q
      target:
        averageValue: 10
  schedules:
    - name: morning
      start: "5 7 * * *"
      end: "10 7 * * *"
      timezone: Europe/Paris
      minReplicas: 5
"""


def test_cli_start_applies_schedules_in_their_zone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write(tmp_path / "p.yaml", POLICY)
    trace = write(tmp_path / "t.csv", flat("10", 600))
    # 06:00Z is 07:00 in Paris: the window opens at t=300.
    assert main(["simulate", str(policy), "--trace", str(trace), "--start", "2026-12-01T06:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert "t=0 is 2026-12-01T06:00:00Z" in out
    assert "t=    300s up     1 -> 5" in out and "schedule morning" in out


def test_cli_without_start_says_schedules_are_not_applied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write(tmp_path / "p.yaml", POLICY)
    trace = write(tmp_path / "t.csv", flat("10", 60))
    assert main(["simulate", str(policy), "--trace", str(trace)]) == 0
    assert "give --start TIME" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("start", "words"), [("yesterday", "not a time"), ("2026-12-01T07:00", "no UTC offset")]
)
def test_cli_bad_start_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], start: str, words: str
) -> None:
    policy = write(tmp_path / "p.yaml", POLICY)
    trace = write(tmp_path / "t.csv", flat("10", 60))
    with pytest.raises(SystemExit) as exited:
        main(["simulate", str(policy), "--trace", str(trace), "--start", start])
    assert exited.value.code == 2 and words in capsys.readouterr().err
