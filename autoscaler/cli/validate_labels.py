"""``validate --compose stack.yml`` and ``validate --swarm``: policies in service labels, checked.

The same checks the controller makes on every pass (``policy.labels``), plus the ones
``validate`` makes of files (a query the Prometheus source would refuse), and two only a
check before deploying can make: policy labels without ``autoscaler.enable=true`` (they
would be ignored), and label values ``docker stack deploy`` would refuse.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from autoscaler.core.policy import PolicySpec, ScalingPolicy
from autoscaler.errors import TargetError
from autoscaler.policy_sources.compose_labels import read_stack_file
from autoscaler.policy_sources.label_controls import ENABLE, PREFIX, read_pause
from autoscaler.policy_sources.label_paths import LabelPathError, resolve
from autoscaler.policy_sources.labels import LabelProblem, enabled, policy_from_labels, policy_keys
from autoscaler.policy_sources.problems import Problem
from autoscaler.sources.promql import TemplateError, fill


@dataclass(frozen=True)
class CheckedService:
    name: str
    where: str  # "stack.yml:12" or "swarm"
    policy: ScalingPolicy | None
    problems: list[str]


def check_labels(service: str, labels: Mapping[str, str]) -> tuple[ScalingPolicy | None, list[LabelProblem]]:
    """A service's label policy (None without ``autoscaler.enable``) and every problem of its labels."""
    problems = [LabelProblem(service, label, message) for label, message in read_pause(labels).problems]
    keys = policy_keys(labels)
    if not enabled(labels):
        # Only keys that name policy fields: other autoscaler.* labels (a file policy's selector
        # label, say) are someone's on purpose.
        keys = {k: v for k, v in keys.items() if _names_a_field(k)}
        if keys:
            shown = ", ".join(sorted(keys)[:3]) + (", ..." if len(keys) > 3 else "")
            problems.append(
                LabelProblem(
                    service,
                    ENABLE,
                    f"missing: the policy labels ({shown}) are ignored without {ENABLE}=true",
                )
            )
        return None, problems
    policy, found = policy_from_labels(service, labels)
    problems.extend(found)
    if policy is not None:
        for metric in policy.spec.metrics:
            if metric.prometheus is None:
                continue
            try:
                fill(metric.prometheus.query, "probe")
            except TemplateError as exc:
                label = f"{PREFIX}metrics.{metric.name}.prometheus.query"
                problems.append(LabelProblem(service, label, str(exc)))
    return (policy if not problems else None), problems


def _names_a_field(key: str) -> bool:
    try:
        resolve(PolicySpec, tuple(key[len(PREFIX) :].split(".")), PREFIX)
    except LabelPathError:
        return False
    return True


def check_compose(paths: list[Path], stack: str | None) -> tuple[list[CheckedService], list[Problem]]:
    checked: list[CheckedService] = []
    problems: list[Problem] = []
    for path in paths:
        services, read_problems = read_stack_file(path, stack=stack)
        problems.extend(read_problems)
        for service in services:
            if not any(key.startswith(PREFIX) for key in service.labels):
                continue
            policy, found = check_labels(service.name, service.labels)
            for problem in found:
                line = service.line_of(problem.label.split(" (at ")[0])
                problems.append(Problem(path, line, None, "", str(problem)))
            where = f"{path}:{service.line}"
            checked.append(CheckedService(service.name, where, policy, [str(p) for p in found]))
    problems.sort(key=lambda p: (str(p.path), p.line))
    return checked, problems


def check_swarm(docker_host: str | None) -> tuple[list[CheckedService], list[str]]:
    """Every service of the connected swarm that has ``autoscaler.*`` labels."""
    from autoscaler.targets.swarm import SwarmTarget

    async def listing() -> list[tuple[str, dict[str, str]]]:
        target = SwarmTarget(docker_host)
        try:
            return [(s.name, s.labels) for s in await target.list_services()]
        finally:
            await target.close()

    checked: list[CheckedService] = []
    problems: list[str] = []
    for name, labels in sorted(asyncio.run(listing())):
        if not any(key.startswith(PREFIX) and not key.startswith("autoscaler.lease.") for key in labels):
            continue
        policy, found = check_labels(name, labels)
        checked.append(CheckedService(name, "swarm", policy, [str(p) for p in found]))
        problems.extend(str(p) for p in found)
    return checked, problems


def summarise_labels(service: CheckedService) -> str:
    if service.policy is None:
        return f"{service.name}: no policy from labels (no {ENABLE}=true)  ({service.where})"
    spec = service.policy.spec
    metrics = ", ".join(m.name for m in spec.metrics)
    return (
        f"{service.name}: labels, replicas {spec.min_replicas}..{spec.max_replicas}, "
        f"metrics: {metrics}  ({service.where})"
    )


def run_labels(
    compose: list[Path] | None, swarm: bool, stack: str | None, docker_host: str | None, output: str
) -> int:
    """Exit status 0 when every checked label is valid, 1 otherwise (problems printed)."""
    checked: list[CheckedService] = []
    lines: list[str] = []
    as_json: list[dict[str, object]] = []
    if compose:
        found, problems = check_compose(compose, stack)
        checked += found
        lines += [str(p) for p in problems]
        as_json += [p.as_dict() for p in problems]
    if swarm:
        try:
            found_swarm, swarm_problems = check_swarm(docker_host)
        except TargetError as exc:
            print(f"swarm-autoscaler validate --swarm: {exc}", file=sys.stderr)
            return 1
        checked += found_swarm
        lines += swarm_problems
        as_json += [{"path": "swarm", "message": p} for p in swarm_problems]
    if output == "json":
        body = {
            "valid": not lines,
            "services": [
                {"service": c.name, "where": c.where, "valid": not c.problems, "problems": c.problems}
                for c in checked
            ],
            "problems": as_json,
        }
        print(json.dumps(body, indent=2))
    elif lines:
        for line in lines:
            print(line)
        print(f"{len(lines)} problem{'s' if len(lines) != 1 else ''} found", file=sys.stderr)
    else:
        for service in checked:
            print(summarise_labels(service))
        if not checked:
            print("no service has autoscaler.* labels", file=sys.stderr)
    return 1 if lines else 0
