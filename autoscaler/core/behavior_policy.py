"""``spec.behavior`` and ``spec.panic``: how fast a policy may move (HPA v2's vocabulary).

Stabilization windows and rate-limit policies per direction, with HPA v2's defaults, and
Knative's panic mode. Kept apart from ``policy.py`` (which holds ``PolicySpec`` with a
field of each) because they are the rules ``behavior.py`` compiles; docs/policy-reference.md
describes every field. Pure: pydantic only.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, field_validator

from autoscaler.core.policy_base import Bool, Int, Number, PolicyModel


class PolicyType(StrEnum):
    """How a rate-limit policy counts: absolute replicas or percent of the period's start."""

    REPLICAS = "Replicas"
    PERCENT = "Percent"


class SelectPolicy(StrEnum):
    """Which of several rate-limit policies wins (HPA ``selectPolicy``)."""

    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


class ScalingRatePolicy(PolicyModel):
    """At most ``value`` replicas (or percent) of change per ``periodSeconds``."""

    type: PolicyType
    value: Annotated[Int, Field(gt=0, le=100_000, description="Replicas or percent; 1..100000.")]
    period_seconds: Annotated[Int, Field(gt=0, le=1800, description="1..1800, as HPA.")]

    @field_validator("type", mode="before")
    @classmethod
    def _pods_is_replicas(cls, v: object) -> object:
        # HPA spells it "Pods"; accept it so HPA manifests can be pasted in.
        return "Replicas" if v == "Pods" else v


class ScalingRules(PolicyModel):
    """One direction of ``behavior``. Fields left out take HPA's default for that direction."""

    stabilization_window_seconds: Annotated[Int | None, Field(ge=0, le=3600)] = None
    select_policy: SelectPolicy = SelectPolicy.MAX
    policies: Annotated[tuple[ScalingRatePolicy, ...] | None, Field(min_length=1)] = None
    # HPA 1.33+ (KEP-4951): this direction's tolerance; None takes spec.tolerance.
    tolerance: Annotated[Number | None, Field(ge=0.0, lt=1.0)] = None


# HPA v2 defaults (k8s.io/kubernetes pkg/apis/autoscaling/v2/defaults.go).
DEFAULT_SCALE_UP_WINDOW = 0
DEFAULT_SCALE_DOWN_WINDOW = 300
DEFAULT_SCALE_UP_POLICIES = (
    ScalingRatePolicy(type=PolicyType.PERCENT, value=100, period_seconds=15),
    ScalingRatePolicy(type=PolicyType.REPLICAS, value=4, period_seconds=15),
)
DEFAULT_SCALE_DOWN_POLICIES = (ScalingRatePolicy(type=PolicyType.PERCENT, value=100, period_seconds=15),)


class Behavior(PolicyModel):
    scale_up: ScalingRules = ScalingRules()
    scale_down: ScalingRules = ScalingRules()

    @property
    def up_window(self) -> int:
        w = self.scale_up.stabilization_window_seconds
        return DEFAULT_SCALE_UP_WINDOW if w is None else w

    @property
    def down_window(self) -> int:
        w = self.scale_down.stabilization_window_seconds
        return DEFAULT_SCALE_DOWN_WINDOW if w is None else w

    @property
    def up_policies(self) -> tuple[ScalingRatePolicy, ...]:
        return self.scale_up.policies or DEFAULT_SCALE_UP_POLICIES

    @property
    def down_policies(self) -> tuple[ScalingRatePolicy, ...]:
        return self.scale_down.policies or DEFAULT_SCALE_DOWN_POLICIES


class Panic(PolicyModel):
    """Knative-style panic mode, on by default.

    Entered when the desired count is at least ``threshold`` x running replicas: scale-up
    skips its stabilization window and rate limits (still capped by maxReplicas), and
    scale-down is suspended until the condition has been false for ``stableWindowSeconds``.
    """

    enabled: Bool = True
    threshold: Annotated[Number, Field(gt=1.0, le=100.0)] = 2.0
    stable_window_seconds: Annotated[Int, Field(ge=0, le=3600)] = 60
