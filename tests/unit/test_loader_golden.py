"""Golden fixtures: every ``invalid-*.yaml`` prints exactly its ``.expected`` lines.

The fixtures live in ``tests/fixtures/policies``. Paths in the expected output are relative
to that directory (the test runs ``validate`` from there).

To regenerate after an intended change of wording, run
    REGENERATE_GOLDEN=1 pytest tests/unit/test_loader_golden.py
then read every changed ``.expected`` file in the diff before committing it: the golden
files are the reviewed statement of what an operator sees.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest
from golden import lines_pointing_outside, run_validate, validate_fixture
from pydantic import BaseModel

from autoscaler.core.policy import ScalingPolicy
from autoscaler.policy_sources import yaml_documents
from autoscaler.policy_sources.loader import PolicyLoadError, load_file, load_paths

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "policies"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
INVALID = sorted(FIXTURES.glob("invalid-*.yaml"))
VALID = sorted(FIXTURES.glob("valid-*.yaml"))


def test_fixture_sets_are_not_empty() -> None:
    assert len(INVALID) >= 20
    assert len(VALID) >= 2


@pytest.mark.parametrize("fixture", INVALID, ids=lambda p: p.stem)
def test_invalid_fixture_prints_its_expected_problems(
    fixture: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, printed, expected = validate_fixture(fixture, [fixture.name], capsys)
    assert code == 1
    assert printed == expected


@pytest.mark.parametrize("fixture", INVALID, ids=lambda p: p.stem)
def test_every_problem_points_inside_the_file(fixture: Path) -> None:
    # Checked on the reviewed golden output, so it also covers validate's run-time checks.
    assert fixture.with_suffix(".expected").read_text().splitlines()
    assert lines_pointing_outside(fixture) == []


@pytest.mark.parametrize("fixture", INVALID, ids=lambda p: p.stem)
def test_loader_problems_are_what_validate_prints(fixture: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The reconciler sees the loader's problems; they must be the ones an operator reviewed.
    monkeypatch.chdir(FIXTURES)
    expected = fixture.with_suffix(".expected").read_text().splitlines()
    try:
        load_paths([Path(fixture.name)])
    except PolicyLoadError as error:
        assert [str(problem) for problem in error.problems] == expected
    else:
        # Loads, so only validate's run-time query check can have refused it.
        assert all("prometheus.query" in line for line in expected)


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


REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "policy-reference.md"


def _yaml_keys(model: type[BaseModel]) -> set[str]:
    keys: set[str] = set()
    for name, info in model.model_fields.items():
        keys.add(info.alias or name)
        for arg in (info.annotation, *get_args(info.annotation)):
            for inner in (arg, *get_args(arg)):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    keys |= _yaml_keys(inner)
    return keys


def test_policy_reference_documents_every_field() -> None:
    text = REFERENCE.read_text()
    undocumented = sorted(key for key in _yaml_keys(ScalingPolicy) if f"`{key}`" not in text)
    assert undocumented == []


def test_policy_reference_example_is_valid_and_complete(tmp_path: Path) -> None:
    example = REFERENCE.read_text().split("## Full example", 1)[1].split("```yaml\n", 1)[1].split("```")[0]
    assert len(load_file(_write(tmp_path / "example.yaml", example))) == 1
    used = set(re.findall(r"^\s*-?\s*([A-Za-z]+):", example, flags=re.MULTILINE))
    # selector is the alternative to service, so one example cannot show both; activationValue
    # needs minReplicas: 0 and has its own example under "Activation from zero".
    assert _yaml_keys(ScalingPolicy) - used == {"selector", "activationValue"}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("fixture", [*VALID, *INVALID], ids=lambda p: p.stem)
def test_pure_python_yaml_gives_the_same_answer_as_libyaml(
    fixture: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # libyaml is optional in PyYAML builds; without it the loader must say the same things.
    def outcome() -> list[str]:
        try:
            return [f"{p.policy.name}@{p.line}" for p in load_paths([fixture])]
        except PolicyLoadError as error:
            return [str(problem) for problem in error.problems]

    with_libyaml = outcome()
    monkeypatch.setattr(yaml_documents, "_FAST_LOADER", None)
    assert outcome() == with_libyaml
