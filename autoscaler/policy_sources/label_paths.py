"""Where a label key such as ``autoscaler.behavior.scaleDown.stabilizationWindowSeconds`` points.

The grammar is read off the pydantic model itself (``PolicySpec``), never from a list kept by
hand, so a field added to the model is a label at once:

* each dotted segment is a field's camelCase alias (the names of ``docs/policy-reference.md``);
* a list of models that have a ``name`` field (``metrics``) is keyed by that name:
  ``autoscaler.metrics.rps.target.averageValue``;
* a key may stop at any field and give the rest as a YAML flow value:
  ``autoscaler.behavior.scaleUp.policies=[{type: Percent, value: 100, periodSeconds: 15}]``;
* a field whose type is text (a string, an enum of strings) takes the label's value as it is,
  so a PromQL query needs no YAML quoting; every other value is read as YAML.
"""

from __future__ import annotations

import enum
import types
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from autoscaler.policy_sources.field_types import as_model
from autoscaler.policy_sources.messages import suggest

# A label path: field aliases, and metric names where a keyed list was entered.
LabelPath = tuple[str, ...]


class LabelPathError(ValueError):
    """A key that names no field; the message is ready for an operator.

    ``meant`` is the path of the field it most likely misspells, so the "missing" error that
    a misspelt required field also causes can be left out.
    """

    def __init__(self, message: str, meant: LabelPath | None = None) -> None:
        super().__init__(message)
        self.meant = meant


@dataclass(frozen=True)
class Target:
    """What a label key resolved to."""

    path: LabelPath
    text: bool  # the value is taken verbatim (a string-like field), not parsed as YAML
    keyed_lists: tuple[LabelPath, ...]  # prefixes of ``path`` that are keyed lists (metrics)


def resolve(root: type[BaseModel], parts: LabelPath, prefix: str) -> Target:
    """Walk ``parts`` down ``root``'s fields; ``prefix`` (``autoscaler.``) is for messages."""
    annotation: Any = root
    keyed: list[LabelPath] = []
    index = 0
    while index < len(parts):
        model = as_model(annotation)
        if model is None:
            done = prefix + ".".join(parts[:index])
            raise LabelPathError(f"{done} is a single value; it has no field '{parts[index]}'")
        part = parts[index]
        fields = aliases(model)
        if part not in fields:
            close = suggest(part, list(fields))
            meant = (*parts[:index], close) if close is not None else None
            raise LabelPathError(_unknown(prefix, parts[:index], close, list(fields)), meant)
        annotation = fields[part]
        index += 1
        element = keyed_element(annotation)
        if element is not None and index < len(parts):
            keyed.append(parts[:index])
            index += 1  # the item's name
            annotation = element
        elif is_list(annotation) and index < len(parts):
            field = prefix + ".".join(parts[:index])
            raise LabelPathError(
                f"{field} is a list without names; give the whole list as a YAML flow value, "
                f"e.g. {field}=[{{...}}, {{...}}]"
            )
    return Target(parts, is_text(annotation), tuple(keyed))


def aliases(model: type[BaseModel]) -> dict[str, Any]:
    """The model's YAML keys and their annotations."""
    return {info.alias or name: info.annotation for name, info in model.model_fields.items()}


def keyed_element(annotation: Any) -> type[BaseModel] | None:
    """The item model of a list whose items carry a ``name`` (so a label can key them)."""
    if not is_list(annotation):
        return None
    model = as_model(annotation)
    if model is None or "name" not in aliases(model):
        return None
    return model


def is_list(annotation: Any) -> bool:
    core = _strip(annotation)
    return get_origin(core) in (tuple, list)


def is_text(annotation: Any) -> bool:
    """True for str, str-valued enums and Literals of strings (optional or not)."""
    core = _strip(annotation)
    if core is str:
        return True
    if isinstance(core, type) and issubclass(core, enum.Enum):
        return all(isinstance(member.value, str) for member in core)
    if get_origin(core) is Literal:
        return all(isinstance(arg, str) for arg in get_args(core))
    return False


def _strip(annotation: Any) -> Any:
    """``Annotated[X | None, ...]`` -> ``X``."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _unknown(prefix: str, parent: LabelPath, close: str | None, allowed: list[str]) -> str:
    base = prefix + "".join(f"{p}." for p in parent)
    if close is not None:
        return f"unknown field; did you mean {base}{close}?"
    return f"unknown field; allowed here: {', '.join(base + a for a in allowed)}"
