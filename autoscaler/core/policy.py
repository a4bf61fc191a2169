"""The ScalingPolicy contract: what a user writes in ``policies/*.yaml``.

Field names and meanings follow the Kubernetes HPA v2 API (minReplicas, metrics[].target,
behavior.scaleUp/scaleDown with stabilization windows and rate-limit policies), so an
operator who knows HPA can read a policy without a manual. Python attributes are
snake_case; the YAML keys are the camelCase aliases. Unknown keys are errors (a typo such
as ``maxReplica`` must not silently fall back to a default).

This module is pure: pydantic only. Loading files and mapping errors to file:line lives in
``autoscaler.policy_sources.loader``.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel

from autoscaler.core.predictive_policy import Predictive

API_VERSION = "autoscaler.swarm/v1"
KIND = "ScalingPolicy"

# Swarm service names: 1-63 chars of [a-zA-Z0-9-_.], starting with an alphanumeric.
SWARM_NAME_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$"
# Prometheus label names (series_label); metric names are the same shape, at most 63 chars.
LABEL_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
_SERVICE_NAME = re.compile(SWARM_NAME_PATTERN)
_METRIC_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,62}$")


# Numbers and switches are taken only as YAML writes them: pydantic's lax mode would read
# `maxReplicas: true` as 1 and `'5'` as 5, so a quoting slip or a yes/no typo would pass.
# Floats accept whole numbers (`averageValue: 50`), never text.
Int = Annotated[int, Strict()]
Number = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        # `.inf` as a target makes every ratio 0 (any load scales to minReplicas), `.nan`
        # makes every comparison false: no number in a policy may be either.
        allow_inf_nan=False,
    )


class PolicyType(StrEnum):
    """How a rate-limit policy counts: absolute replicas or percent of the period's start."""

    REPLICAS = "Replicas"
    PERCENT = "Percent"


class SelectPolicy(StrEnum):
    """Which of several rate-limit policies wins (HPA ``selectPolicy``)."""

    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


class ScalingRatePolicy(_Model):
    """At most ``value`` replicas (or percent) of change per ``periodSeconds``."""

    type: PolicyType
    value: Annotated[Int, Field(gt=0, le=100_000, description="Replicas or percent; 1..100000.")]
    period_seconds: Annotated[Int, Field(gt=0, le=1800, description="1..1800, as HPA.")]

    @field_validator("type", mode="before")
    @classmethod
    def _pods_is_replicas(cls, v: object) -> object:
        # HPA spells it "Pods"; accept it so HPA manifests can be pasted in.
        return "Replicas" if v == "Pods" else v


class ScalingRules(_Model):
    """One direction of ``behavior``. Fields left out take HPA's default for that direction."""

    stabilization_window_seconds: Annotated[Int | None, Field(ge=0, le=3600)] = None
    select_policy: SelectPolicy = SelectPolicy.MAX
    policies: Annotated[tuple[ScalingRatePolicy, ...] | None, Field(min_length=1)] = None


# HPA v2 defaults (k8s.io/kubernetes pkg/apis/autoscaling/v2/defaults.go).
DEFAULT_SCALE_UP_WINDOW = 0
DEFAULT_SCALE_DOWN_WINDOW = 300
DEFAULT_SCALE_UP_POLICIES = (
    ScalingRatePolicy(type=PolicyType.PERCENT, value=100, period_seconds=15),
    ScalingRatePolicy(type=PolicyType.REPLICAS, value=4, period_seconds=15),
)
DEFAULT_SCALE_DOWN_POLICIES = (ScalingRatePolicy(type=PolicyType.PERCENT, value=100, period_seconds=15),)


class Behavior(_Model):
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


class Panic(_Model):
    """Knative-style panic mode, on by default.

    Entered when the desired count is at least ``threshold`` x running replicas: scale-up
    skips its stabilization window and rate limits (still capped by maxReplicas), and
    scale-down is suspended until the condition has been false for ``stableWindowSeconds``.
    """

    enabled: Bool = True
    threshold: Annotated[Number, Field(gt=1.0, le=100.0)] = 2.0
    stable_window_seconds: Annotated[Int, Field(ge=0, le=3600)] = 60


class Target(_Model):
    """Exactly one of ``averageValue`` (per running replica) or ``value`` (whole service)."""

    average_value: Annotated[Number | None, Field(gt=0)] = None
    value: Annotated[Number | None, Field(gt=0)] = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.average_value is None) == (self.value is None):
            given = "both are given" if self.value is not None else "neither is given"
            raise ValueError(
                f"give exactly one of averageValue (per replica) or value (whole service); {given}"
            )
        return self

    @property
    def kind(self) -> Literal["AverageValue", "Value"]:
        return "AverageValue" if self.average_value is not None else "Value"

    @property
    def amount(self) -> float:
        v = self.average_value if self.average_value is not None else self.value
        assert v is not None  # guaranteed by _exactly_one
        return v


class PrometheusQuery(_Model):
    """A PromQL query returning one number for the service.

    ``{{ service }}`` in ``query`` is replaced by the service name, escaped for a PromQL
    string literal. With ``seriesLabel`` the query is *grouped* (e.g. ``sum by (service)
    (...)``): it is sent once per tick for every policy that shares it, and the series whose
    ``seriesLabel`` label equals the service name is this service's value.
    """

    query: Annotated[str, Field(min_length=1)]
    series_label: Annotated[str | None, Field(pattern=LABEL_NAME_PATTERN)] = None

    @model_validator(mode="after")
    def _grouped_not_templated(self) -> Self:
        if self.series_label is not None and "{{" in self.query:
            raise ValueError(
                "a grouped query (seriesLabel set) is shared by all services; "
                "remove the {{ service }} template from it"
            )
        return self


class IpvsCounter(StrEnum):
    ACTIVE_CONNECTIONS = "activeConnections"
    CONNECTION_RATE = "connectionRate"


class IpvsMetric(_Model):
    """Connection counters from Swarm's IPVS load balancer, summed over nodes."""

    counter: IpvsCounter


class MetricSpec(_Model):
    name: Annotated[str, Field(description="Identifier used in reasons, traces and /metrics.")]
    prometheus: PrometheusQuery | None = None
    ipvs: IpvsMetric | None = None
    target: Target

    @field_validator("name")
    @classmethod
    def _name_shape(cls, v: str) -> str:
        if not _METRIC_NAME.match(v):
            raise ValueError("metric name must match [a-zA-Z_][a-zA-Z0-9_]* (at most 63 chars)")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.prometheus is None) == (self.ipvs is None):
            raise ValueError("give exactly one metric source: prometheus or ipvs")
        return self

    @property
    def source_kind(self) -> Literal["prometheus", "ipvs"]:
        return "prometheus" if self.prometheus is not None else "ipvs"


class Selector(_Model):
    labels: Annotated[dict[str, str], Field(min_length=1)]


class OnTimeout(StrEnum):
    """What to do when a node's lost tasks are not replaced and running in time."""

    ALERT = "alert"  # report only
    FORCE_UPDATE = "forceUpdate"  # bump TaskTemplate.ForceUpdate: Swarm recreates every task
    SCALE_UP = "scaleUp"  # add scaleUpBy replicas (within maxReplicas)


class LoadBalancerCheck(StrEnum):
    """Whether a replacement must also be an IPVS backend (routed) before it counts as confirmed."""

    AUTO = "auto"  # required when IPVS agents are configured and read IPVS; ignored otherwise
    REQUIRED = "required"  # always: wait (and say why) while the agents cannot tell
    IGNORE = "ignore"  # running and healthy is enough


class NodeFailure(_Model):
    """Confirming that tasks lost with a node came back healthy elsewhere (``nodeFailure``)."""

    confirm_within_seconds: Annotated[Int, Field(ge=1, le=3600)] = 60
    on_timeout: OnTimeout = OnTimeout.ALERT
    scale_up_by: Annotated[Int, Field(ge=1, le=100)] = 1
    load_balancer: LoadBalancerCheck = LoadBalancerCheck.AUTO


class PolicySpec(_Model):
    service: str | None = None
    selector: Selector | None = None
    min_replicas: Annotated[Int, Field(ge=0, le=10_000)] = 1
    max_replicas: Annotated[Int, Field(ge=1, le=10_000)]
    tolerance: Annotated[Number, Field(ge=0.0, lt=1.0)] = 0.1
    metrics: Annotated[tuple[MetricSpec, ...], Field(min_length=1)]
    behavior: Behavior = Behavior()
    panic: Panic = Panic()
    node_failure: NodeFailure = NodeFailure()
    predictive: Predictive = Predictive()

    @field_validator("service")
    @classmethod
    def _service_shape(cls, v: str | None) -> str | None:
        if v is not None and not _SERVICE_NAME.match(v):
            raise ValueError(
                "not a Swarm service name: 1-63 characters of letters, digits, '-', '_' or '.', "
                "starting with a letter or digit"
            )
        return v

    # Field validators, not the model validator below: the error then points at the field's
    # line, and it is reported together with errors in other fields (a model validator only
    # runs once every field is valid).
    @field_validator("max_replicas")
    @classmethod
    def _max_not_below_min(cls, v: int, info: ValidationInfo) -> int:
        low = info.data.get("min_replicas")
        if low is not None and v < low:
            raise ValueError(f"must be at least minReplicas ({low})")
        return v

    @field_validator("metrics")
    @classmethod
    def _unique_metric_names(cls, v: tuple[MetricSpec, ...]) -> tuple[MetricSpec, ...]:
        names = [m.name for m in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"metric names must be unique; repeated: {', '.join(dupes)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.service is None) == (self.selector is None):
            given = "both are given" if self.service is not None else "neither is given"
            raise ValueError(f"give exactly one of service (a name) or selector (labels); {given}")
        return self


class Metadata(_Model):
    name: Annotated[str, Field(pattern=SWARM_NAME_PATTERN)]
    labels: dict[str, str] = {}


class ScalingPolicy(_Model):
    api_version: Literal["autoscaler.swarm/v1"]
    kind: Literal["ScalingPolicy"]
    metadata: Metadata
    spec: PolicySpec

    @property
    def name(self) -> str:
        return self.metadata.name
