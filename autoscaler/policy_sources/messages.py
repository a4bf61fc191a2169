"""Turn pydantic's validation errors into sentences an operator can act on.

Pydantic speaks to programmers ("Extra inputs are not permitted", "Input should be 'Max',
'Min' or 'Disabled'"). An operator needs the field, what was given, and what is allowed,
and for a typo the name they probably meant.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from autoscaler.core.policy import LABEL_NAME_PATTERN, SWARM_NAME_PATTERN
from autoscaler.policy_sources.field_types import as_model
from autoscaler.policy_sources.problems import MAX_QUOTED_CHARS, clip
from autoscaler.policy_sources.yaml_documents import YamlPath, format_path

# Patterns in the model, said in words (the regex stays in the message for the precise rule).
_PATTERN_WORDS = {
    SWARM_NAME_PATTERN: (
        "1-63 characters of letters, digits, '-', '_' or '.', starting with a letter or digit"
    ),
    LABEL_NAME_PATTERN: ("a Prometheus label name: letters, digits and '_', not starting with a digit"),
}

_COMPARISONS = {
    "greater_than": ("gt", "greater than"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "less than"),
    "less_than_equal": ("le", "at most"),
}

_TYPE_WORDS = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number (not .inf, .nan or a value too large for a float)",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string (quote it if it looks like a number or yes/no)",
    "model_type": "a mapping of fields",
    "model_attributes_type": "a mapping of fields",
    "dict_type": "a mapping",
    "tuple_type": "a list",
    "list_type": "a list",
}


def describe(error: ErrorDetails, root: type[BaseModel]) -> str:
    """The operator-language message for one pydantic error at ``error['loc']`` in ``root``."""
    kind = error["type"]
    loc: YamlPath = tuple(error["loc"])
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    given = error.get("input")
    if kind == "extra_forbidden":
        return _unknown_field(str(loc[-1]), allowed_fields(root, loc[:-1]))
    if kind == "missing":
        parent = f"under '{format_path(loc[:-1])}'" if len(loc) > 1 else "at the top of the document"
        return f"missing required field '{loc[-1]}'; add it {parent}"
    if kind in ("literal_error", "enum"):
        expected = str(ctx.get("expected", "?"))
        message = f"{_show(given)} is not allowed; use one of: {expected}"
        close = suggest(given, re.findall(r"'([^']*)'", expected)) if isinstance(given, str) else None
        return f"{message} (did you mean {close}?)" if close else message
    if kind in _COMPARISONS:
        key, words = _COMPARISONS[kind]
        return f"must be {words} {_number(ctx.get(key))}, got {_show(given)}"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        pattern_words = _PATTERN_WORDS.get(pattern)
        shape = f"{pattern_words} (pattern {pattern})" if pattern_words else f"the pattern {pattern}"
        return f"{_show(given)} is not valid here: must be {shape}"
    if kind in ("too_short", "too_long"):
        bound = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        side = "at least" if kind == "too_short" else "at most"
        return f"must have {side} {bound} item{'s' if bound != 1 else ''}, got {ctx.get('actual_length')}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind in _TYPE_WORDS:
        return f"must be {_TYPE_WORDS[kind]}, got {_show(given)}{_quoting_hint(kind, given)}"
    if kind in ("value_error", "assertion_error"):
        message = str(ctx.get("error", error["msg"]))
        # Field-level checks (a name's shape) do not repeat the value; model-level ones do.
        scalar = isinstance(given, str | int | float) and not isinstance(given, bool)
        return f"{message}, got {_show(given)}" if scalar else message
    return str(error["msg"])


def allowed_fields(root: type[BaseModel], loc: YamlPath) -> list[str]:
    """The YAML keys accepted at ``loc`` (empty when ``loc`` is not inside a model)."""
    model = _model_at(root, loc)
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def suggest(name: str, allowed: list[str]) -> str | None:
    """The allowed name closest to ``name``, if one is close enough to be a typo."""
    if len(name) > MAX_QUOTED_CHARS:
        return None  # no field name is that long; and difflib's cost grows with the length
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    if close:
        return close[0]
    # snake_case for camelCase is the usual slip; difflib scores it low on short names.
    squashed = name.replace("_", "").replace("-", "").lower()
    return next((a for a in allowed if a.lower() == squashed), None)


def _unknown_field(name: str, allowed: list[str]) -> str:
    message = f"unknown field '{clip(name)}'"
    close = suggest(name, allowed)
    if close:
        return f"{message} (did you mean {close}?)"
    if allowed:
        return f"{message}; allowed here: {', '.join(allowed)}"
    return message


def _model_at(root: type[BaseModel], loc: YamlPath) -> type[BaseModel] | None:
    current: Any = root
    for part in loc:
        if isinstance(part, int):
            continue  # list items: the element model was already unwrapped from the field type
        model = as_model(current)
        if model is None:
            return None
        field = next(
            (info for name, info in model.model_fields.items() if (info.alias or name) == part),
            None,
        )
        if field is None:
            return None
        current = field.annotation
    return as_model(current)


def _quoting_hint(kind: str, given: object) -> str:
    """Why a number in quotes is refused: the quotes make it text, and text is never read as a number."""
    if kind in ("int_type", "float_type") and isinstance(given, str) and _looks_like_number(given):
        return "; remove the quotes"
    return ""


def _looks_like_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return f"'{clip(value)}'"
    return clip(str(value))
