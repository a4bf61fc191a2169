"""Golden fixtures for ``validate``: run it on one fixture and compare with the reviewed output.

Shared by the policy-file and the labels golden tests. ``REGENERATE_GOLDEN=1`` rewrites the
``.expected`` files instead of trusting them: read every changed one in the diff before
committing, they are the reviewed statement of what an operator sees.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from autoscaler.cli import validate

REGENERATE = os.environ.get("REGENERATE_GOLDEN") == "1"


def run_validate(argv: Sequence[str]) -> int:
    # Only the validate subcommand: these tests must not depend on the others importing.
    parser = argparse.ArgumentParser(prog="swarm-autoscaler")
    validate.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["validate", *argv])
    code: int = args.handler(args)
    return code


def expected_output(fixture: Path, printed: str) -> str:
    """The reviewed ``.expected`` text of ``fixture`` (rewritten from ``printed`` when regenerating)."""
    expected_file = fixture.with_suffix(".expected")
    if REGENERATE:
        expected_file.write_text(printed)
    assert expected_file.exists(), f"{expected_file.name} is missing; see the test module's docstring"
    return expected_file.read_text()


def validate_fixture(
    fixture: Path, argv: Sequence[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """Run validate with ``argv`` from the fixture's directory (the paths it prints are relative
    to it): the exit code, what it printed, and the reviewed ``.expected`` text."""
    with contextlib.chdir(fixture.parent):
        code = run_validate(argv)
    printed = capsys.readouterr().out
    return code, printed, expected_output(fixture, printed)


def lines_pointing_outside(fixture: Path) -> list[str]:
    """The lines of the fixture's ``.expected`` that do not read ``FIXTURE:LINE:`` with LINE inside it."""
    line_count = max(len(fixture.read_text().splitlines()), 1)
    outside = []
    for output_line in fixture.with_suffix(".expected").read_text().splitlines():
        path, line = output_line.split(":")[:2]
        if path != fixture.name or not 1 <= int(line) <= line_count:
            outside.append(output_line)
    return outside
