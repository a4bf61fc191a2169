"""Validation of issue 13's fields: every mistake gets file:line, the field and how to fix it."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_loader import line_of, problems_of, write

from autoscaler.cli.validate import summarise
from autoscaler.policy_sources.loader import load_file

HEAD = """\
apiVersion: autoscaler.swarm/v1
kind: ScalingPolicy
metadata:
  name: p
spec:
  service: web
  minReplicas: {min}
  maxReplicas: 10
  metrics:
    - name: rps
      prometheus:
        query: q
      target:
        averageValue: 50
"""


def policy(extra: str, *, min_replicas: int = 1, metric_extra: str = "") -> str:
    return HEAD.format(min=min_replicas) + metric_extra + extra


SCHEDULE = """\
  schedules:
    - name: {name}
      start: "{start}"
      end: "{end}"
      timezone: {zone}
      minReplicas: {floor}
"""


def schedule(
    name: str = "day",
    start: str = "0 8 * * 1-5",
    end: str = "0 19 * * 1-5",
    zone: str = "UTC",
    floor: int = 4,
) -> str:
    return SCHEDULE.format(name=name, start=start, end=end, zone=zone, floor=floor)


def test_every_new_field_loads(tmp_path: Path) -> None:
    text = policy(
        "  fallback:\n    failureThreshold: 3\n    replicas: 6\n    behavior: static\n"
        + schedule(zone="Europe/Paris")
        + "      maxReplicas: 12\n"
        + "  scaleToZeroAfterSeconds: 60\n"
        + "  behavior:\n    scaleUp:\n      tolerance: 0.02\n    scaleDown:\n      tolerance: 0.2\n",
        min_replicas=0,
        metric_extra="      activationValue: 0.5\n      emptyAs: zero\n",
    )
    (loaded,) = load_file(write(tmp_path / "p.yaml", text))
    spec = loaded.policy.spec
    assert spec.fallback is not None and spec.fallback.behavior.value == "static"
    assert spec.schedules[0].timezone == "Europe/Paris" and spec.schedules[0].max_replicas == 12
    assert (spec.behavior.scale_up.tolerance, spec.behavior.scale_down.tolerance) == (0.02, 0.2)
    assert spec.metrics[0].activation_value == 0.5 and spec.metrics[0].empty_as.value == "zero"
    assert spec.scale_to_zero_after_seconds == 60


def test_fallback_defaults_never_scale_down(tmp_path: Path) -> None:
    text = policy("  fallback:\n    failureThreshold: 3\n    replicas: 6\n")
    (loaded,) = load_file(write(tmp_path / "p.yaml", text))
    assert loaded.policy.spec.fallback is not None
    assert loaded.policy.spec.fallback.behavior.value == "currentReplicasIfHigher"


@pytest.mark.parametrize(
    ("extra", "bad_line", "field", "words"),
    [
        (schedule(start="0 25 * * *"), 'start: "0 25', "spec.schedules[0].start", "Bad hour"),
        (schedule(end="0 8 * *"), 'end: "0 8 * *"', "spec.schedules[0].end", "5-field"),
        (schedule(zone="Mars/Olympus"), "timezone: Mars", "spec.schedules[0].timezone", "IANA"),
        (schedule(start="0 8 * * *", end="0  8 * * *"), "- name: day", "spec.schedules[0]", "never open"),
        (schedule(floor=11), "schedules:", "spec.schedules", "own maxReplicas"),
        (schedule() + schedule().replace("  schedules:\n", ""), "schedules:", "spec.schedules",
         "repeated: day"),
        (schedule() + "      maxReplicas: 2\n", "maxReplicas: 2", "spec.schedules[0].maxReplicas",
         "at least"),
        ("  fallback:\n    failureThreshold: 0\n    replicas: 2\n", "failureThreshold: 0",
         "spec.fallback.failureThreshold", "at least 1"),
        ("  fallback:\n    failureThreshold: 3\n    replicas: 20\n", "fallback:", "spec.fallback",
         "above maxReplicas"),
        ("  fallback:\n    failureThreshold: 3\n    replicas: 2\n    behavior: Static\n", "behavior: Static",
         "spec.fallback.behavior", "currentReplicasIfHigher"),
        ("  fallback:\n    replicas: 2\n", "fallback:", "spec.fallback.failureThreshold", "required"),
        ("  behavior:\n    scaleUp:\n      tolerance: 1.5\n", "tolerance: 1.5",
         "spec.behavior.scaleUp.tolerance", "less than 1"),
        ("  scaleToZeroAfterSeconds: -1\n", "scaleToZeroAfterSeconds", "spec.scaleToZeroAfterSeconds", "0"),
    ],
)  # fmt: skip
def test_mistakes_point_at_their_line(
    tmp_path: Path, extra: str, bad_line: str, field: str, words: str
) -> None:
    file = write(tmp_path / "p.yaml", policy(extra))
    (problem,) = problems_of([file])
    assert (problem.path, problem.line, problem.field) == (file, line_of(file, bad_line), field)
    assert words in problem.message


@pytest.mark.parametrize(
    ("extra", "metric_extra", "bad_line", "field", "words"),
    [
        ("  fallback:\n    failureThreshold: '3'\n    replicas: 2\n", "", "failureThreshold: '3'",
         "spec.fallback.failureThreshold", "remove the quotes"),
        (schedule().replace("minReplicas: 4", "minReplicas: true"), "", "minReplicas: true",
         "spec.schedules[0].minReplicas", "whole number"),
        ("  behavior:\n    scaleUp:\n      tolerance: .inf\n", "", "tolerance: .inf",
         "spec.behavior.scaleUp.tolerance", "finite"),
        ("  scaleToZeroAfterSeconds: yes\n", "", "scaleToZeroAfterSeconds", "spec.scaleToZeroAfterSeconds",
         "whole number"),
        ("", "      activationValue: .nan\n", "activationValue", "spec.metrics[0].activationValue", "finite"),
    ],
)  # fmt: skip
def test_issue_13_fields_are_strict_and_finite_like_the_rest(
    tmp_path: Path, extra: str, metric_extra: str, bad_line: str, field: str, words: str
) -> None:
    # Issue 11's rule for every number and switch of a policy: no quoted numbers, no yes/no
    # for a count, no .inf or .nan.
    file = write(tmp_path / "p.yaml", policy(extra, min_replicas=0, metric_extra=metric_extra))
    (problem,) = problems_of([file])
    assert (problem.path, problem.line, problem.field) == (file, line_of(file, bad_line), field)
    assert words in problem.message


def test_activation_value_needs_min_replicas_zero(tmp_path: Path) -> None:
    file = write(tmp_path / "p.yaml", policy("", min_replicas=2, metric_extra="      activationValue: 1\n"))
    (problem,) = problems_of([file])
    assert (problem.line, problem.field) == (line_of(file, "metrics:"), "spec.metrics")
    assert "minReplicas: 0" in problem.message


def test_empty_as_takes_only_its_two_words(tmp_path: Path) -> None:
    file = write(tmp_path / "p.yaml", policy("", metric_extra="      emptyAs: null_is_zero\n"))
    (problem,) = problems_of([file])
    assert (problem.line, problem.field) == (line_of(file, "emptyAs"), "spec.metrics[0].emptyAs")
    assert "missing" in problem.message and "zero" in problem.message


def test_validate_summary_names_fallback_and_schedules(tmp_path: Path) -> None:
    text = policy(schedule() + "  fallback:\n    failureThreshold: 3\n    replicas: 6\n")
    (loaded,) = load_file(write(tmp_path / "p.yaml", text))
    line = summarise(loaded)
    assert "fallback currentReplicasIfHigher 6 after 3 failed reads" in line
    assert "schedules: day (min 4)" in line


def test_the_reference_scale_to_zero_example_is_valid(tmp_path: Path) -> None:
    reference = Path(__file__).resolve().parents[2] / "docs" / "policy-reference.md"
    section = reference.read_text().split("### Activation from zero", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```")[0]
    head = "apiVersion: autoscaler.swarm/v1\nkind: ScalingPolicy\nmetadata:\n  name: reports\n"
    (loaded,) = load_file(write(tmp_path / "p.yaml", head + example))
    assert loaded.policy.spec.metrics[0].activation_value == 0.1
