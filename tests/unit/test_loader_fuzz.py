"""Damaged policy files: the loader answers with problems that point inside the file, never a crash.

Operators save half-edited files; the hot-reloading controller reads them. Whatever the
damage, the outcome must be policies or a ``PolicyLoadError`` whose problems each name a
line of the file, never another exception.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.policy_sources.loader import PolicyLoadError, load_file

SOURCES = [
    *sorted((Path(__file__).resolve().parents[2] / "examples" / "policies").glob("*.yaml")),
    *sorted((Path(__file__).resolve().parents[1] / "fixtures" / "policies").glob("valid-*.yaml")),
]
YAML_PUNCTUATION = [*":-{}[]\"' \t#&*!|>,?%@`", "\n", "  ", "{{", "}}", "---\n", "~"]


@st.composite
def damaged_policy(draw: st.DrawFn) -> str:
    lines = draw(st.sampled_from(SOURCES)).read_text().splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(lines) - 1))
        damage = draw(st.sampled_from(["delete", "duplicate", "swap", "poke", "truncate"]))
        if damage == "delete" and len(lines) > 1:
            del lines[index]
        elif damage == "duplicate":
            lines.insert(index, lines[index])
        elif damage == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
        elif damage == "poke":
            line = lines[index]
            at = draw(st.integers(0, len(line)))
            lines[index] = line[:at] + draw(st.sampled_from(YAML_PUNCTUATION)) + line[at:]
        elif damage == "truncate":
            lines[index] = lines[index][: draw(st.integers(0, len(lines[index])))]
    return "".join(lines)


@settings(max_examples=150, deadline=None)
@given(text=damaged_policy())
def test_damaged_file_loads_or_reports_problems_inside_it(text: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "damaged.yaml"
        path.write_text(text)
        try:
            loaded = load_file(path)
        except PolicyLoadError as error:
            assert error.problems
            last_line = max(text.count("\n") + 1, 1)
            for problem in error.problems:
                assert problem.path == path
                assert 1 <= problem.line <= last_line, str(problem)
                assert str(problem).startswith(f"{path}:{problem.line}")
                assert problem.message
        else:
            assert all(item.path == path and item.line >= 1 for item in loaded)
