"""Every ``AUTOSCALER_*`` variable the code or the docs tell an operator to set exists in the settings model.

A hint that names a variable nobody reads (``AUTOSCALER_HA__SERVICE_NAME`` once did) sends the
operator to fix the wrong thing. The names are checked against ``autoscaler.settings.Settings``
the way pydantic-settings reads them: ``AUTOSCALER_`` + group + ``__`` + field.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from autoscaler.settings import CONFIG_ENV, ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
# Python packages whose strings reach operators (the lab and the agent wherever they live).
PYTHON_TREES = ("autoscaler", "ipvs_agent", "lab")
DOCS = ("README.md", "docs")
NAME = re.compile(rf"\b{ENV_PREFIX}[A-Z0-9][A-Z0-9_]*")
NOT_SETTINGS = {
    CONFIG_ENV: "where the settings file is, read by load_settings itself",
    "AUTOSCALER_IMAGE": "the image tag charts/stack.yml deploys, read by docker stack deploy",
}


def setting_problem(name: str) -> str | None:
    """Why ``name`` is not a variable of ``Settings``, or None when it is one."""
    if name in NOT_SETTINGS:
        return None
    parts = name.removeprefix(ENV_PREFIX).lower().split("__")
    if len(parts) != 2:
        return f"{name}: not {ENV_PREFIX}<GROUP>__<FIELD>"
    group, field = parts
    if group not in Settings.model_fields:
        return f"{name}: no settings group {group!r} (groups: {', '.join(Settings.model_fields)})"
    model = Settings.model_fields[group].annotation
    assert isinstance(model, type) and issubclass(model, BaseModel)
    if field not in model.model_fields:
        return f"{name}: group {group!r} has no field {field!r} (fields: {', '.join(model.model_fields)})"
    return None


def python_strings(path: Path) -> list[tuple[int, str]]:
    """Every string constant of a module (docstrings and f-string parts included), with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def named_variables() -> dict[str, list[str]]:
    """``AUTOSCALER_*`` name -> the places (file:line) that mention it."""
    found: dict[str, list[str]] = {}
    texts: list[tuple[Path, int, str]] = []
    for tree in PYTHON_TREES:
        for path in sorted((ROOT / tree).rglob("*.py")):
            if "cache" not in path.relative_to(ROOT).parts:
                texts += [(path, line, text) for line, text in python_strings(path)]
    for doc in DOCS:
        target = ROOT / doc
        for path in [target] if target.is_file() else sorted(target.rglob("*.md")):
            texts += [(path, n, line) for n, line in enumerate(path.read_text().splitlines(), 1)]
    for path, line, text in texts:
        for name in NAME.findall(text):
            found.setdefault(name, []).append(f"{path.relative_to(ROOT)}:{line}")
    return found


def test_every_named_variable_is_a_setting() -> None:
    found = named_variables()
    # The hints this test was written for are among what it reads.
    assert {"AUTOSCALER_LEASE__SERVICE", "AUTOSCALER_LEASE__SECONDS", "AUTOSCALER_LOOP__INTERVAL"} <= set(
        found
    )
    problems = [
        f"{problem} (at {', '.join(found[name])})" for name in found if (problem := setting_problem(name))
    ]
    assert problems == []


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("AUTOSCALER_HA__SERVICE_NAME", "no settings group 'ha'"),
        ("AUTOSCALER_LEASE__SECONDZ", "group 'lease' has no field 'secondz'"),
        ("AUTOSCALER_PROMETHEUS_URL", "not AUTOSCALER_<GROUP>__<FIELD>"),
    ],
)
def test_names_outside_the_model_are_caught(name: str, why: str) -> None:
    assert why in (setting_problem(name) or "")
