"""``swarm-autoscaler validate``: exit codes, text and JSON output, help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from golden import run_validate

from autoscaler.policy_sources.loader import load_paths

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "policies"


def test_valid_paths_print_one_line_per_policy_and_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_validate([str(EXAMPLES)]) == 0
    lines = capsys.readouterr().out.splitlines()
    loaded = load_paths([EXAMPLES])
    assert len(lines) == len(loaded)
    for line, item in zip(lines, loaded, strict=True):
        spec = item.policy.spec
        assert line.startswith(f"{item.policy.name}: service {spec.service}, ")
        assert f"replicas {spec.min_replicas}..{spec.max_replicas}" in line
        for metric in spec.metrics:
            assert f"{metric.name} (" in line
            assert f"{metric.target.amount:g}" in line


def test_selector_policy_summary_shows_the_labels(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_validate([str(FIXTURES / "valid-multi-document.yaml")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("frontends: selector tier=frontend, ")


def test_problems_print_one_per_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    fixture = FIXTURES / "invalid-negative-and-zero.yaml"
    assert run_validate([str(fixture)]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) >= 2
    assert all(line.startswith(f"{fixture}:") for line in lines)
    assert f"{len(lines)} problems found" in captured.err


def test_missing_path_exits_1_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope"
    assert run_validate([str(missing)]) == 1
    assert capsys.readouterr().out == f"{missing}: no such file or directory\n"


def test_directory_without_policies_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_validate([str(tmp_path)]) == 1
    assert "no policies found" in capsys.readouterr().out


def test_json_output_when_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_validate([str(EXAMPLES), "--output", "json"]) == 0
    body = json.loads(capsys.readouterr().out)
    loaded = load_paths([EXAMPLES])
    assert body["valid"] is True
    assert body["problems"] == []
    assert [p["name"] for p in body["policies"]] == [p.policy.name for p in loaded]
    first = body["policies"][0]
    assert first["policy"]["spec"]["maxReplicas"] == loaded[0].policy.spec.max_replicas


def test_json_output_when_invalid(capsys: pytest.CaptureFixture[str]) -> None:
    fixture = FIXTURES / "invalid-two-documents.yaml"
    assert run_validate(["--output", "json", str(fixture)]) == 1
    body = json.loads(capsys.readouterr().out)
    assert body["valid"] is False
    assert body["policies"] == []
    expected_lines = (FIXTURES / "invalid-two-documents.expected").read_text().splitlines()
    assert [p["line"] for p in body["problems"]] == [int(line.split(":")[1]) for line in expected_lines]
    assert set(body["problems"][0]) == {"path", "line", "column", "field", "message"}


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as no_path:
        run_validate([])
    assert no_path.value.code == 2
    with pytest.raises(SystemExit) as bad_output:
        run_validate([str(EXAMPLES), "--output", "xml"])
    assert bad_output.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as shown:
        run_validate(["--help"])
    assert shown.value.code == 0
    help_text = capsys.readouterr().out
    assert "swarm-autoscaler validate examples/policies/" in help_text
    assert "path:line: field: message" in help_text


def test_installed_command_runs_validate(tmp_path: Path) -> None:
    """Through ``python -m autoscaler``, as an operator or CI would call it."""
    done = subprocess.run(
        [sys.executable, "-m", "autoscaler", "validate", str(EXAMPLES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == len(load_paths([EXAMPLES]))
