"""Policies read from service labels on every pass, each service on its own.

The services come from the pass's own listing, so a label change (``docker service update
--label-add``, a stack redeploy) is in force on the next pass; the Swarm event of that
update makes the next pass come at once. A service's labels are parsed again only when its
``autoscaler.*`` labels changed.

A service whose labels turn invalid keeps its last valid policy, and its problems are
reported on every pass (the log, ``/decisions``, ``autoscaler_label_policy_problems``)
until they are fixed. One service's labels never affect another: nothing here is shared
between services but the report.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from autoscaler.core.observation import ServiceState
from autoscaler.core.policy import ScalingPolicy
from autoscaler.observability.metrics import ControllerMetrics
from autoscaler.policy_sources.labels import LabelProblem, enabled, policy_from_labels, policy_keys

log = logging.getLogger("autoscaler.policies")


@dataclass
class _Entry:
    service_id: str
    keys: dict[str, str]  # the policy labels last parsed
    policy: ScalingPolicy | None  # the last valid policy (None: never valid yet)
    problems: list[LabelProblem] = field(default_factory=list)


class LabelPolicies:
    """``enabled`` False: no label policies at all. ``selector``: only services that also carry
    all these labels may have one (several controllers sharing a swarm)."""

    def __init__(
        self, metrics: ControllerMetrics, *, enabled: bool = True, selector: Mapping[str, str] | None = None
    ) -> None:
        self.metrics = metrics
        self.enabled = enabled
        self.selector = dict(selector or {})
        self._entries: dict[str, _Entry] = {}
        self._reported: set[str] = set()  # services with a problem series exported
        self.problems: dict[str, list[str]] = {}  # service -> problems, as last reported

    def refresh(self, services: Sequence[ServiceState]) -> dict[str, ScalingPolicy]:
        """The label policy in force for each service that has one (by service name)."""
        seen: set[str] = set()
        for service in services if self.enabled else ():
            if not enabled(service.labels) or not self._selected(service):
                continue
            seen.add(service.name)
            self._refresh_one(service)
        for name in [n for n in self._entries if n not in seen]:
            entry = self._entries.pop(name)
            if entry.policy is not None:
                log.info(
                    "%s: no policy from labels any more (autoscaler.enable removed, or the service is gone)",
                    name,
                    extra={"event": "label_policy_removed", "service": name},
                )
        return {name: e.policy for name, e in self._entries.items() if e.policy is not None}

    def _selected(self, service: ServiceState) -> bool:
        return all(service.labels.get(key) == value for key, value in self.selector.items())

    def _refresh_one(self, service: ServiceState) -> None:
        keys = policy_keys(service.labels)
        entry = self._entries.get(service.name)
        if entry is not None and entry.keys == keys and entry.service_id == service.id:
            return
        policy, problems = policy_from_labels(service.name, keys)
        if entry is None or entry.service_id != service.id:
            # A new (or re-created) service starts afresh: an old service's policy is not its own.
            entry = self._entries[service.name] = _Entry(service.id, keys, None)
        previous = entry.policy
        entry.keys, entry.problems = keys, problems
        if policy is not None:
            entry.policy = policy
            if previous != policy:
                verb = "in force" if previous is None else "changed"
                log.info(
                    "%s: policy from labels %s",
                    service.name,
                    verb,
                    extra={"event": "label_policy_loaded", "service": service.name},
                )

    def report(self, extra: Iterable[LabelProblem] = ()) -> None:
        """Log every label problem (this pass's pause-label ones too) and export the counts."""
        by_service: dict[str, list[str]] = {}
        for name, entry in self._entries.items():
            if entry.problems:
                kept = _what_is_kept(entry)
                by_service[name] = [f"{p}{kept}" for p in entry.problems]
        for pause_problem in extra:  # their message says how the service is held
            by_service.setdefault(pause_problem.service, []).append(str(pause_problem))
        for name, lines in sorted(by_service.items()):
            for line in lines:
                log.error("%s", line, extra={"event": "label_problem", "service": name})
        for name in self._reported - by_service.keys():
            self.metrics.forget_label_problems(name)
        for name, problems in by_service.items():
            self.metrics.label_problems.labels(name).set(len(problems))
        self._reported = set(by_service)
        self.problems = by_service

    def in_force(self) -> Mapping[str, ScalingPolicy]:
        return {name: e.policy for name, e in self._entries.items() if e.policy is not None}


def _what_is_kept(entry: _Entry) -> str:
    if entry.policy is None:
        return " (not scaled by labels until this is fixed)"
    return " (the last valid policy from its labels stays in force)"
