"""Golden fixtures for policies in labels: every ``invalid-*.yml`` stack file prints its ``.expected``.

The fixtures live in ``tests/fixtures/labels`` (next to the policy-file ones) and are checked
with ``validate --compose`` from that directory. Regenerate after an intended change of
wording with ``REGENERATE_GOLDEN=1 pytest tests/unit/test_labels_golden.py``, then read every
changed ``.expected`` file in the diff: they are the reviewed statement of what an operator sees.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from golden import lines_pointing_outside, run_validate, validate_fixture

from autoscaler.policy_sources.compose_labels import read_stack_file
from autoscaler.policy_sources.labels import policy_from_labels
from autoscaler.policy_sources.loader import load_paths

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "labels"
INVALID = sorted(FIXTURES.glob("invalid-*.yml"))
VALID = sorted(FIXTURES.glob("valid-*.yml"))


def test_fixture_sets_are_not_empty() -> None:
    assert len(INVALID) >= 10
    assert len(VALID) >= 2


@pytest.mark.parametrize("fixture", INVALID, ids=lambda p: p.stem)
def test_invalid_stack_file_prints_its_expected_problems(
    fixture: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, printed, expected = validate_fixture(fixture, ["--compose", fixture.name], capsys)
    assert code == 1
    assert printed == expected


@pytest.mark.parametrize("fixture", INVALID, ids=lambda p: p.stem)
def test_every_problem_points_at_a_line_of_the_file(fixture: Path) -> None:
    assert lines_pointing_outside(fixture) == []


@pytest.mark.parametrize("fixture", INVALID, ids=lambda p: p.stem)
def test_the_controller_reports_the_same_label_problems(fixture: Path) -> None:
    # What the controller logs each pass is what validate printed, minus file:line.
    expected = fixture.with_suffix(".expected").read_text().splitlines()
    services, _ = read_stack_file(fixture)
    for service in services:
        if service.labels.get("autoscaler.enable") != "true":
            continue
        _, problems = policy_from_labels(service.name, service.labels)
        for problem in problems:
            assert any(line.endswith(f": {problem}") for line in expected), str(problem)


@pytest.mark.parametrize("fixture", VALID, ids=lambda p: p.stem)
def test_valid_stack_file_passes(
    fixture: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(FIXTURES)
    assert run_validate(["--compose", fixture.name]) == 0
    printed = capsys.readouterr().out
    assert "labels, replicas" in printed


def test_stack_name_prefixes_services_and_env_is_interpolated(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    stack = tmp_path / "stack.yml"
    stack.write_text(
        "services:\n  web:\n    deploy:\n      labels:\n"
        "        - autoscaler.enable=true\n"
        "        - autoscaler.maxReplicas=${MAX:-6}\n"
        '        - autoscaler.metrics.rps.prometheus.query=sum(x{service="{{ service }}"})\n'
        "        - autoscaler.metrics.rps.target.averageValue=$$5\n"
    )
    monkeypatch.setenv("MAX", "9")
    assert run_validate(["--compose", str(stack), "--stack", "shop"]) == 1
    out = capsys.readouterr().out
    assert out == (
        f"{stack}:8: service shop_web: label autoscaler.metrics.rps.target.averageValue: "
        "must be a number, got '$5'\n"
    )
    services, problems = read_stack_file(stack, stack="shop", environ={"MAX": "9"})
    assert problems == [] and services[0].labels["autoscaler.maxReplicas"] == "9"
    services, _ = read_stack_file(stack, environ={})
    assert services[0].name == "web" and services[0].labels["autoscaler.maxReplicas"] == "6"


def test_validate_without_anything_to_check_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as nothing:
        run_validate([])
    assert nothing.value.code == 2
    assert "give policy PATHs, --compose STACK_FILE or --swarm" in capsys.readouterr().err


def test_as_labels_prints_deploy_labels_that_load_to_the_same_policies(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples" / "policies"
    assert run_validate([str(examples), "--as-labels"]) == 0
    printed = capsys.readouterr().out
    blocks = [b for b in printed.split("# ") if b.strip()]
    assert len(blocks) == len(list(examples.glob("*.yaml")))
    for index, block in enumerate(blocks):
        header, *items = block.strip().splitlines()
        service = header.rsplit(" ", 1)[-1]
        stack = tmp_path / f"stack{index}.yml"
        indented = "".join(f"        {item}\n" for item in items)
        stack.write_text(f"services:\n  {service}:\n    deploy:\n      labels:\n{indented}")
        found, problems = read_stack_file(stack, environ={})
        assert problems == []
        policy, label_problems = policy_from_labels(service, found[0].labels)
        assert label_problems == [] and policy is not None
        expected = next(p for p in load_paths([examples]) if p.policy.spec.service == service).policy.spec
        assert policy.spec == expected.model_copy(
            update={"metrics": tuple(sorted(expected.metrics, key=lambda m: m.name))}
        )
