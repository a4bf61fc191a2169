"""Which policy governs which service, and which metrics each pair needs.

A file policy names one service (``spec.service``) or selects services by labels
(``spec.selector.labels``, all must match); a service with ``autoscaler.enable=true`` has
a policy of its own, read from its labels. The most specific claim wins, in this order:

1. a file policy that names the service: someone wrote a policy for exactly this service
   into the controller's configuration, which the service's deployer cannot override;
2. the service's own labels: they were written for exactly this service, by its deployer;
3. a file policy whose selector matches it: a rule for many services.

A losing claim is reported (``Shadowed``) so nobody wonders why their labels do nothing.
Two claims of the same kind are a conflict; the service is then left alone and the
conflict reported, because scaling it by either policy would be a guess.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from autoscaler.core.observation import MetricRequest, ServiceState
from autoscaler.core.policy import ScalingPolicy

FROM_FILE = "file"
FROM_LABELS = "labels"


@dataclass(frozen=True, slots=True)
class Assignment:
    policy: ScalingPolicy
    service: ServiceState
    source: str = FROM_FILE  # FROM_FILE or FROM_LABELS


@dataclass(frozen=True, slots=True)
class Shadowed:
    """A claim on a service that lost to a more specific one, and why."""

    service: str
    governs: str  # the winning policy, in words
    ignored: str  # the losing claim, in words
    why: str
    policies: tuple[str, ...] = ()  # file policies among the losers (not idle, only outranked)

    @property
    def message(self) -> str:
        return f"service {self.service!r} is governed by {self.governs}; {self.ignored} ignored: {self.why}"


@dataclass(frozen=True, slots=True)
class Matching:
    assignments: list[Assignment] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    shadowed: list[Shadowed] = field(default_factory=list)


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
    """Pair each service with its one governing file policy; report services with several."""
    found = match_all(policies, services, {})
    return found.assignments, found.conflicts


def match_all(
    policies: Iterable[ScalingPolicy],
    services: Sequence[ServiceState],
    from_labels: Mapping[str, ScalingPolicy],
) -> Matching:
    """Pair each service with its one governing policy (file or labels; see the module doc)."""
    # Indexed by name: a pass over 1,000 services and 1,000 policies was a million
    # comparisons (a third of the pass in bench/bench_full_pass.py).
    by_name: dict[str, list[ScalingPolicy]] = {}
    by_selector: list[ScalingPolicy] = []
    for p in policies:
        if p.spec.service is not None:
            by_name.setdefault(p.spec.service, []).append(p)
        elif p.spec.selector is not None:
            by_selector.append(p)
    found = Matching()
    for service in services:
        own = from_labels.get(service.name)
        claims = by_name.get(service.name, [])
        if claims:
            if own is not None and len(claims) == 1:
                found.shadowed.append(
                    Shadowed(
                        service.name,
                        f"file policy {claims[0].name!r} (spec.service names it)",
                        "its autoscaler.* labels are",
                        "a file policy naming the service outranks its labels; remove one of the two",
                    )
                )
        else:
            selecting = [p for p in by_selector if _selects(p, service)] if by_selector else []
            if own is not None:
                if selecting:
                    names = tuple(sorted(p.name for p in selecting))
                    found.shadowed.append(
                        Shadowed(
                            service.name,
                            "its own autoscaler.* labels",
                            f"selector polic{'ies' if len(names) > 1 else 'y'} {', '.join(names)}",
                            "a service's own labels are more specific than a selector",
                            names,
                        )
                    )
                found.assignments.append(Assignment(own, service, FROM_LABELS))
                continue
            claims = selecting
        if len(claims) == 1:
            found.assignments.append(Assignment(claims[0], service))
        elif claims:
            found.conflicts.append(Conflict(service, tuple(sorted(p.name for p in claims))))
    return found


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
    policies: Iterable[ScalingPolicy],
    assignments: Sequence[Assignment],
    conflicts: Sequence[Conflict],
    shadowed: Sequence[Shadowed] = (),
) -> list[str]:
    """Why each file policy that governs no service is idle, so a typo in a name is never silent."""
    busy = {a.policy.name for a in assignments if a.source == FROM_FILE}
    busy |= {name for c in conflicts for name in c.policies}
    busy |= {name for s in shadowed for name in s.policies}
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
