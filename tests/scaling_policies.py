"""A ScalingPolicy for tests that need the whole document, not only its spec."""

from __future__ import annotations

from typing import Any

from autoscaler.core.policy import ScalingPolicy


def scaling_policy(name: str, spec: dict[str, Any]) -> ScalingPolicy:
    """The validated ScalingPolicy ``name`` with ``spec`` (YAML field names, as in a policy file)."""
    document = {"apiVersion": "autoscaler.swarm/v1", "kind": "ScalingPolicy", "metadata": {"name": name}}
    return ScalingPolicy.model_validate({**document, "spec": spec})
