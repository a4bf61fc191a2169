"""Golden fixtures: every ``invalid-*.yaml`` prints exactly its ``.expected`` lines.

The fixtures live in ``tests/fixtures/policies``. Paths in the expected output are relative
to that directory (the test runs ``validate`` from there).

To regenerate after an intended change of wording, run
    REGENERATE_GOLDEN=1 pytest tests/unit/test_loader_golden.py
then read every changed ``.expected`` file in the diff before committing it: the golden
files are the reviewed statement of what an operator sees.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from autoscaler.cli import validate
from autoscaler.policy.loader import PolicyLoadError, load_file, load_paths

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "policies"
EXAMPLES = Path(__file__).resolve().parents[2] / "policies"
INVALID = sorted(FIXTURES.glob("invalid-*.yaml"))
VALID = sorted(FIXTURES.glob("valid-*.yaml"))
REGENERATE = os.environ.get("REGENERATE_GOLDEN") == "1"


def run_validate(argv: Sequence[str]) -> int:
    # Only the validate subcommand: these tests must not depend on the others importing.
    parser = argparse.ArgumentParser(prog="swarm-autoscaler")
    validate.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["validate", *argv])
    code: int = args.handler(args)
    return code


def test_fixture_sets_are_not_empty() -> None:
    assert len(INVALID) >= 20
    assert len(VALID) >= 2


@pytest.mark.parametrize("fixture", INVALID, ids=lambda p: p.stem)
def test_invalid_fixture_prints_its_expected_problems(
    fixture: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(FIXTURES)
    code = run_validate([fixture.name])
    printed = capsys.readouterr().out
    expected_file = fixture.with_suffix(".expected")
    if REGENERATE:
        expected_file.write_text(printed)
    assert code == 1
    assert expected_file.exists(), f"{expected_file.name} is missing; see this module's docstring"
    assert printed == expected_file.read_text()


@pytest.mark.parametrize("fixture", INVALID, ids=lambda p: p.stem)
def test_every_problem_points_inside_the_file(fixture: Path) -> None:
    line_count = len(fixture.read_text().splitlines())
    with pytest.raises(PolicyLoadError) as raised:
        load_paths([fixture])
    assert raised.value.problems
    for problem in raised.value.problems:
        assert 1 <= problem.line <= max(line_count, 1), str(problem)


@pytest.mark.parametrize("fixture", VALID, ids=lambda p: p.stem)
def test_valid_fixture_loads(fixture: Path) -> None:
    loaded = load_file(fixture)
    assert loaded
    assert all(item.path == fixture for item in loaded)


def test_every_expected_file_has_its_fixture() -> None:
    orphans = [p.name for p in FIXTURES.glob("*.expected") if not p.with_suffix(".yaml").exists()]
    assert orphans == []


def test_example_policies_validate(capsys: pytest.CaptureFixture[str]) -> None:
    examples = sorted(EXAMPLES.glob("*.yaml"))
    assert {p.name for p in examples} >= {"web.yaml", "tcp-service.yaml", "worker.yaml"}
    assert run_validate([str(EXAMPLES)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == len(load_paths([EXAMPLES]))
