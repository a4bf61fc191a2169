"""What the controller last did for each service, as served by ``/decisions`` and logged.

A record exists for every service a policy governs, whatever happened to it: scaled,
left alone, held, skipped or failed. A person reading ``explain`` must never have to guess
why a service did not move.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from autoscaler.core.decision import Decision
from autoscaler.core.policy import MetricSpec, ScalingPolicy
from autoscaler.core.schedules import Bounds
from autoscaler.observability.metrics import ServiceSample
from autoscaler.policy_sources.label_controls import Pause

# Reasons and errors carry text from outside (Docker's and Prometheus' answers, exception
# messages); each source bounds its own, and this is the last bound before /decisions and
# the log: no record text is longer than this.
MAX_RECORD_TEXT = 2000


def bounded(text: str) -> str:
    if len(text) <= MAX_RECORD_TEXT:
        return text
    return f"{text[:MAX_RECORD_TEXT]}... ({len(text):,} characters)"


class Outcome(StrEnum):
    SCALED = "scaled"
    DRY_RUN = "dry_run"
    STANDBY = "standby"  # decided, but another controller replica holds the lease
    UNCHANGED = "unchanged"
    PAUSED = "paused"  # autoscaler.paused / pausedReplicas: the replica count is left alone
    HELD = "held"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    service: str
    service_id: str
    policy: ScalingPolicy
    at: float
    outcome: Outcome
    reason: str
    current: int | None
    running: int
    decision: Decision | None = None
    error: str | None = None
    source: str = "file"  # where the policy came from: "file" or "labels"
    pause: Pause | None = None  # set while the service is paused
    paused_since: float | None = None  # pausedAt, else when this controller first saw it paused
    bounds: Bounds | None = None  # min/max in force at the decision (schedules); None: the policy's

    def sample(self) -> ServiceSample | None:
        """This record as the service's gauges; None for a service with no replica count (global)."""
        if self.current is None:
            return None
        spec, decision = self.policy.spec, self.decision
        bounds = self.bounds or Bounds(spec.min_replicas, spec.max_replicas)
        limits = bounds.min_replicas, bounds.max_replicas
        if decision is None:
            return ServiceSample(self.service, self.current, self.running, *limits)
        return ServiceSample(
            service=self.service,
            current=self.current,
            running=self.running,
            min_replicas=limits[0],
            max_replicas=limits[1],
            desired=decision.desired,
            panic=decision.panic,
            fallback="Fallback" in decision.limits,
            values=tuple((m.name, m.value) for m in decision.metrics),
            forecasts=tuple((f.metric, f.value) for f in decision.forecasts),
        )

    def to_json(self) -> dict[str, Any]:
        """A plain-JSON view; ``ratio`` is value/target as HPA computes it (per replica for AverageValue)."""
        spec = self.policy.spec
        bounds = self.bounds or Bounds(spec.min_replicas, spec.max_replicas)
        body: dict[str, Any] = {
            "service": self.service,
            "service_id": self.service_id,
            "policy": self.policy.name,
            "policy_source": self.source,
            "at": self.at,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "current": self.current,
            "running": self.running,
            "min_replicas": bounds.min_replicas,
            "max_replicas": bounds.max_replicas,
            "error": self.error,
            "paused": None,
            "decision": None,
        }
        if self.pause is not None and self.pause.paused:
            body["paused"] = {**self.pause.as_json(), "since": self.paused_since}
        if self.decision is not None:
            d = self.decision
            specs = {m.name: m for m in self.policy.spec.metrics}
            body["decision"] = {
                "at": d.at,
                "current": d.current,
                "running": d.running,
                "recommendation": d.recommendation,
                "desired": d.desired,
                "direction": d.direction.value,
                "panic": d.panic,
                "fallback": "Fallback" in d.limits,
                "limits": list(d.limits),
                "reason": d.reason,
                "metrics": [
                    {
                        "name": m.name,
                        "value": m.value,
                        "desired": m.desired,
                        "reason": m.reason,
                        **_target_view(specs.get(m.name), m.value, d.running),
                    }
                    for m in d.metrics
                ],
                # spec.predictive: value None (and a note) when the forecast was not used.
                "forecasts": [
                    {
                        "metric": f.metric,
                        "value": f.value,
                        "horizon": f.horizon,
                        "method": f.method,
                        "note": f.note,
                    }
                    for f in d.forecasts
                ],
            }
        return body


def _target_view(spec: MetricSpec | None, value: float | None, running: int) -> dict[str, Any]:
    if spec is None:
        return {"target": None, "target_kind": None, "ratio": None}
    target = spec.target
    ratio: float | None = None
    if value is not None:
        denominator = target.amount * running if target.kind == "AverageValue" else target.amount
        ratio = value / denominator if denominator > 0 else None
    return {"target": target.amount, "target_kind": target.kind, "ratio": ratio}
