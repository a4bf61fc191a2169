"""A policy written as service labels: the inverse of ``labels.policy_from_labels``.

Used to show a file policy the label way (``swarm-autoscaler validate --as-labels``) and by
the round-trip tests: every example policy, written as labels and read back, is the same
model. Only the fields the policy sets are written, so defaults stay defaults.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from autoscaler.core.policy import ScalingPolicy
from autoscaler.policy_sources.field_types import as_model
from autoscaler.policy_sources.label_controls import ENABLE, PREFIX
from autoscaler.policy_sources.label_paths import aliases, keyed_element


def policy_to_labels(policy: ScalingPolicy) -> dict[str, str]:
    """``autoscaler.*`` labels that make a service carrying them governed by this policy's spec."""
    spec = policy.spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
    spec.pop("service", None)
    spec.pop("selector", None)
    labels = {ENABLE: "true"}
    _flatten(type(policy.spec), spec, (), labels)
    return labels


def _flatten(model: type[BaseModel], data: dict[str, Any], at: tuple[str, ...], out: dict[str, str]) -> None:
    fields = aliases(model)
    for key, value in data.items():
        annotation = fields[key]
        path = (*at, key)
        element = keyed_element(annotation)
        inner = as_model(annotation)
        if element is not None and isinstance(value, list):
            for item in value:
                body = {k: v for k, v in item.items() if k != "name"}
                _flatten(element, body, (*path, item["name"]), out)
        elif inner is not None and isinstance(value, dict) and value:
            _flatten(inner, value, path, out)
        else:
            out[PREFIX + ".".join(path)] = _text(value)


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    dumped: str = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False)
    return dumped.strip()
