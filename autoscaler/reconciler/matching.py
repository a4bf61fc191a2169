"""Which policy governs which service, and which metrics each pair needs.

A policy names one service (``spec.service``) or selects services by labels
(``spec.selector.labels``, all must match). A service claimed by a policy that names it
belongs to that policy even if selectors also match it: the explicit claim is the more
specific one. Two claims of the same kind are a conflict; the service is then left alone
and the conflict reported, because scaling it by either policy would be a guess.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from autoscaler.core.observation import MetricRequest, ServiceState
from autoscaler.core.policy import ScalingPolicy


@dataclass(frozen=True, slots=True)
class Assignment:
    policy: ScalingPolicy
    service: ServiceState


@dataclass(frozen=True, slots=True)
class Conflict:
    service: ServiceState
    policies: tuple[str, ...]

    @property
    def message(self) -> str:
        names = ", ".join(self.policies)
        return (
            f"service {self.service.name!r} is claimed by several policies ({names}); "
            "it is not scaled until exactly one policy names or selects it"
        )


def _selects(policy: ScalingPolicy, service: ServiceState) -> bool:
    selector = policy.spec.selector
    if selector is None:
        return False
    return all(service.labels.get(key) == value for key, value in selector.labels.items())


def match(
    policies: Iterable[ScalingPolicy], services: Sequence[ServiceState]
) -> tuple[list[Assignment], list[Conflict]]:
    """Pair each service with its one governing policy; report services with several."""
    # Indexed by name: a pass over 1,000 services and 1,000 policies was a million
    # comparisons (a third of the pass in bench/bench_full_pass.py).
    by_name: dict[str, list[ScalingPolicy]] = {}
    by_selector: list[ScalingPolicy] = []
    for p in policies:
        if p.spec.service is not None:
            by_name.setdefault(p.spec.service, []).append(p)
        elif p.spec.selector is not None:
            by_selector.append(p)
    assignments: list[Assignment] = []
    conflicts: list[Conflict] = []
    for service in services:
        claims = by_name.get(service.name, [])
        if not claims:
            claims = [p for p in by_selector if _selects(p, service)]
        if len(claims) == 1:
            assignments.append(Assignment(claims[0], service))
        elif claims:
            conflicts.append(Conflict(service, tuple(sorted(p.name for p in claims))))
    return assignments, conflicts


def metric_requests(policy: ScalingPolicy, service_name: str) -> list[MetricRequest]:
    """One request per metric of ``policy`` for ``service_name`` (sources dedupe and batch)."""
    requests: list[MetricRequest] = []
    for metric in policy.spec.metrics:
        if metric.prometheus is not None:
            requests.append(
                MetricRequest(
                    service=service_name,
                    metric=metric.name,
                    kind="prometheus",
                    query=metric.prometheus.query,
                    series_label=metric.prometheus.series_label,
                )
            )
        elif metric.ipvs is not None:
            requests.append(
                MetricRequest(
                    service=service_name, metric=metric.name, kind="ipvs", query=metric.ipvs.counter.value
                )
            )
    return requests


def idle_policies(
    policies: Iterable[ScalingPolicy], assignments: Sequence[Assignment], conflicts: Sequence[Conflict]
) -> list[str]:
    """Why each policy that governs no service is idle, so a typo in a name is never silent."""
    busy = {a.policy.name for a in assignments} | {name for c in conflicts for name in c.policies}
    messages: list[str] = []
    for policy in policies:
        if policy.name in busy:
            continue
        if policy.spec.service is not None:
            messages.append(f"policy {policy.name!r}: no service named {policy.spec.service!r} in the swarm")
        elif policy.spec.selector is not None:
            labels = ", ".join(f"{k}={v}" for k, v in sorted(policy.spec.selector.labels.items()))
            messages.append(f"policy {policy.name!r}: no service has all the labels {labels}")
    return messages
