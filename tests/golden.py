"""Golden fixtures for ``validate``: run it on one fixture and compare with the reviewed output.

Shared by the policy-file and the labels golden tests. ``REGENERATE_GOLDEN=1`` rewrites the
``.expected`` files instead of trusting them: read every changed one in the diff before
committing, they are the reviewed statement of what an operator sees.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

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
