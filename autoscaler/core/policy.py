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

from pydantic import Field, ValidationInfo, field_validator, model_validator

from autoscaler.core.behavior_policy import Behavior, Panic
from autoscaler.core.cron import cron_problem, timezone_problem
from autoscaler.core.policy_base import Int, Number, PolicyModel
from autoscaler.core.predictive_policy import Predictive

API_VERSION = "autoscaler.swarm/v1"
KIND = "ScalingPolicy"

# Swarm service names: 1-63 chars of [a-zA-Z0-9-_.], starting with an alphanumeric.
SWARM_NAME_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$"
# Prometheus label names (series_label); metric names are the same shape, at most 63 chars.
LABEL_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
_SERVICE_NAME = re.compile(SWARM_NAME_PATTERN)
_METRIC_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,62}$")


class Target(PolicyModel):
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


class PrometheusQuery(PolicyModel):
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


class IpvsMetric(PolicyModel):
    """Connection counters from Swarm's IPVS load balancer, summed over nodes."""

    counter: IpvsCounter


class EmptyAs(StrEnum):
    """What a query that returns no series means (KEDA's ``ignoreNullValues``)."""

    MISSING = "missing"  # no data: a failed read (never scales down; counts towards fallback)
    ZERO = "zero"  # the value 0: a sum over a service with no tasks has no series at all


class MetricSpec(PolicyModel):
    name: Annotated[str, Field(description="Identifier used in reasons, traces and /metrics.")]
    prometheus: PrometheusQuery | None = None
    ipvs: IpvsMetric | None = None
    target: Target
    # KEDA's activationThreshold: with minReplicas 0, above this the service wakes (0 -> 1).
    activation_value: Annotated[Number | None, Field(ge=0)] = None
    empty_as: EmptyAs = EmptyAs.MISSING

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


class Selector(PolicyModel):
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


class NodeFailure(PolicyModel):
    """Confirming that tasks lost with a node came back healthy elsewhere (``nodeFailure``)."""

    confirm_within_seconds: Annotated[Int, Field(ge=1, le=3600)] = 60
    on_timeout: OnTimeout = OnTimeout.ALERT
    scale_up_by: Annotated[Int, Field(ge=1, le=100)] = 1
    load_balancer: LoadBalancerCheck = LoadBalancerCheck.AUTO


class FallbackBehavior(StrEnum):
    """KEDA ``fallback.behavior``: which count to use once a metric keeps failing."""

    STATIC = "static"  # fallback.replicas, up or down
    CURRENT_REPLICAS = "currentReplicas"  # hold the current count
    CURRENT_REPLICAS_IF_HIGHER = "currentReplicasIfHigher"  # max(current, replicas)
    CURRENT_REPLICAS_IF_LOWER = "currentReplicasIfLower"  # min(current, replicas), never below current


class Fallback(PolicyModel):
    """KEDA ``fallback``: what to do after ``failureThreshold`` consecutive failed reads of a metric.

    The default behavior is ``currentReplicasIfHigher``, not KEDA's ``static``: missing data
    must never scale a service down unless the policy says ``behavior: static`` itself.
    """

    failure_threshold: Annotated[Int, Field(ge=1, le=1000)]
    replicas: Annotated[Int, Field(ge=0, le=10_000)]
    behavior: FallbackBehavior = FallbackBehavior.CURRENT_REPLICAS_IF_HIGHER


class Schedule(PolicyModel):
    """A floor (and optionally a ceiling) in force between two cron times (KEDA cron, Nomad schedule).

    Inside the window when the latest ``start`` time at or before now is later than the
    latest ``end`` time; both are 5-field cron expressions read in ``timezone``.
    """

    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")]
    start: str
    end: str
    timezone: str = "UTC"
    min_replicas: Annotated[Int, Field(ge=0, le=10_000)]
    max_replicas: Annotated[Int | None, Field(ge=1, le=10_000)] = None

    @field_validator("start", "end")
    @classmethod
    def _cron(cls, v: str) -> str:
        problem = cron_problem(v)
        if problem is not None:
            raise ValueError(problem)
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        problem = timezone_problem(v)
        if problem is not None:
            raise ValueError(problem)
        return v

    @field_validator("max_replicas")
    @classmethod
    def _max_not_below_min(cls, v: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min_replicas")
        if v is not None and low is not None and v < low:
            raise ValueError(f"must be at least this schedule's minReplicas ({low})")
        return v

    @model_validator(mode="after")
    def _distinct_ends(self) -> Self:
        if self.start.split() == self.end.split():
            raise ValueError("start and end are the same cron time, so the window is never open")
        return self


class PolicySpec(PolicyModel):
    service: str | None = None
    selector: Selector | None = None
    min_replicas: Annotated[Int, Field(ge=0, le=10_000)] = 1
    max_replicas: Annotated[Int, Field(ge=1, le=10_000)]
    tolerance: Annotated[Number, Field(ge=0.0, lt=1.0)] = 0.1
    metrics: Annotated[tuple[MetricSpec, ...], Field(min_length=1)]
    behavior: Behavior = Behavior()
    panic: Panic = Panic()
    node_failure: NodeFailure = NodeFailure()
    fallback: Fallback | None = None
    schedules: tuple[Schedule, ...] = ()
    # KEDA's cooldownPeriod: with minReplicas 0, how long every activation metric must stay
    # at or below its activationValue before the service goes to 0.
    scale_to_zero_after_seconds: Annotated[Int, Field(ge=0, le=86_400)] = 300
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
    def _unique_metric_names(cls, v: tuple[MetricSpec, ...], info: ValidationInfo) -> tuple[MetricSpec, ...]:
        names = [m.name for m in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"metric names must be unique; repeated: {', '.join(dupes)}")
        low = info.data.get("min_replicas")
        for m in v:
            if m.activation_value is not None and low is not None and low > 0:
                raise ValueError(
                    f"metric {m.name}: activationValue only decides 0 <-> 1 replicas, "
                    f"and minReplicas is {low}; set minReplicas: 0 or remove activationValue"
                )
        return v

    @field_validator("fallback")
    @classmethod
    def _fallback_in_range(cls, v: Fallback | None, info: ValidationInfo) -> Fallback | None:
        high = info.data.get("max_replicas")
        if v is not None and high is not None and v.replicas > high:
            raise ValueError(f"fallback replicas {v.replicas} is above maxReplicas ({high})")
        return v

    @field_validator("schedules")
    @classmethod
    def _schedules_fit(cls, v: tuple[Schedule, ...], info: ValidationInfo) -> tuple[Schedule, ...]:
        names = [s.name for s in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"schedule names must be unique; repeated: {', '.join(dupes)}")
        high = info.data.get("max_replicas")
        for s in v:
            if high is not None and s.max_replicas is None and s.min_replicas > high:
                raise ValueError(
                    f"schedule {s.name}: minReplicas {s.min_replicas} is above maxReplicas ({high}); "
                    "lower it or give the schedule its own maxReplicas"
                )
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.service is None) == (self.selector is None):
            given = "both are given" if self.service is not None else "neither is given"
            raise ValueError(f"give exactly one of service (a name) or selector (labels); {given}")
        return self


class Metadata(PolicyModel):
    name: Annotated[str, Field(pattern=SWARM_NAME_PATTERN)]
    labels: dict[str, str] = Field(default_factory=dict)


class ScalingPolicy(PolicyModel):
    api_version: Literal["autoscaler.swarm/v1"]
    kind: Literal["ScalingPolicy"]
    metadata: Metadata
    spec: PolicySpec

    @property
    def name(self) -> str:
        return self.metadata.name
