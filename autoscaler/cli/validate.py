"""``swarm-autoscaler validate PATH...``: check policy files before deploying them.

``--compose`` and ``--swarm`` check policies in service labels instead (``validate_labels``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from autoscaler.core.policy import MetricSpec, ScalingPolicy
from autoscaler.policy_sources.loader import LoadedPolicy, PolicyLoadError, Problem, load_paths
from autoscaler.policy_sources.yaml_documents import YamlPath, format_path, parse_documents
from autoscaler.sources.promql import TemplateError, fill

EXIT_OK = 0
EXIT_INPUT = 1

_EPILOG = """\
examples:
  swarm-autoscaler validate examples/policies/
  swarm-autoscaler validate web.yaml worker.yaml --output json
  swarm-autoscaler validate --compose stack.yml             # deploy.labels, offline (CI)
  swarm-autoscaler validate --compose stack.yml --stack shop  # names as shop_web, ...
  swarm-autoscaler validate --swarm                         # every service of $DOCKER_HOST
  swarm-autoscaler validate web.yaml --as-labels            # the same policy as deploy.labels

Directories load their *.yaml and *.yml files (not sub-directories, not hidden files).
Every problem of every file is printed as 'path:line: field: message' and the exit status
is 1; when all is valid, one line per policy is printed and the exit status is 0. Exit
status 70 means validate itself failed (a bug): the traceback is printed.
Label problems read 'stack.yml:line: service web: label autoscaler.x: message' (--compose)
or 'service web: label autoscaler.x: message' (--swarm). Stack files are interpolated from
the environment ($VAR, ${VAR:-default}) as docker stack deploy does.
Files over 1 MiB, aliases expanding past 10,000 nodes, nesting over 32 levels and
numbers over 100 characters are refused (docs/limits.md).
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check policy files and print every problem with file:line",
        description=(
            "Load ScalingPolicy YAML files and directories exactly as the autoscaler would, "
            "and report every problem at once, or summarise the valid policies."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="policy file or directory")
    parser.add_argument(
        "--compose",
        action="append",
        type=Path,
        metavar="STACK_FILE",
        help="check the autoscaler.* deploy.labels of a stack file (repeatable)",
    )
    parser.add_argument(
        "--stack", metavar="NAME", help="with --compose: the stack name, so services are named NAME_service"
    )
    parser.add_argument(
        "--swarm", action="store_true", help="check the autoscaler.* labels of every service of the swarm"
    )
    parser.add_argument("--docker-host", help="with --swarm: a manager's Docker API (default: $DOCKER_HOST)")
    parser.add_argument(
        "--as-labels",
        action="store_true",
        help="print each valid policy as the deploy.labels that say the same (to move it to a stack file)",
    )
    parser.add_argument(
        "--output",
        choices=("text", "json"),
        default="text",
        help="'json' prints one object {valid, policies, problems} for CI tools (default: text)",
    )
    parser.set_defaults(handler=run, validate_parser=parser)


def run(args: argparse.Namespace) -> int:
    if not args.paths and not args.compose and not args.swarm:
        args.validate_parser.error("give policy PATHs, --compose STACK_FILE or --swarm")  # exits 2
    if args.compose or args.swarm:
        from autoscaler.cli.validate_labels import run_labels

        code = run_labels(args.compose, args.swarm, args.stack, args.docker_host, args.output)
        if not args.paths:
            return code
        return max(code, _run_files(args))
    return _run_files(args)


def _run_files(args: argparse.Namespace) -> int:
    try:
        loaded = load_paths(args.paths)
    except PolicyLoadError as exc:
        _report_problems(exc.problems, args.output)
        return EXIT_INPUT
    late_problems = [problem for policy in loaded for problem in _query_problems(policy)]
    if late_problems:
        _report_problems(late_problems, args.output)
        return EXIT_INPUT
    if not loaded:
        problem = Problem(
            Path(" ".join(str(p) for p in args.paths)),
            0,
            None,
            "",
            "no policies found (directories are searched for *.yaml and *.yml files)",
        )
        _report_problems([problem], args.output)
        return EXIT_INPUT
    if args.as_labels:
        _print_as_labels(loaded)
    elif args.output == "json":
        body = {"valid": True, "policies": [_as_json(p) for p in loaded], "problems": []}
        print(json.dumps(body, indent=2))
    else:
        for policy in loaded:
            print(summarise(policy))
    return EXIT_OK


def _print_as_labels(loaded: list[LoadedPolicy]) -> None:
    from autoscaler.policy_sources.label_export import policy_to_labels

    for policy in loaded:
        spec = policy.policy.spec
        if spec.service is None:
            print(
                f"# {policy.policy.name} ({policy.path}:{policy.line}) selects services by labels; "
                "as labels it must go on each service it selects"
            )
        else:
            where = f"{policy.path}:{policy.line}"
            print(f"# {policy.policy.name} ({where}): deploy.labels of service {spec.service}")
        for key, value in policy_to_labels(policy.policy).items():
            print(f"- {_quoted(f'{key}={value}')}")


def _quoted(item: str) -> str:
    """A list item of deploy.labels, quoted when YAML would not read it as plain text."""
    item = item.replace("$", "$$")  # docker stack deploy interpolates $VAR in stack files
    plain = not any(mark in item for mark in (": ", " #", "{", "[", '"', "'")) and not item.endswith(":")
    return item if plain else "'" + item.replace("'", "''") + "'"


def _query_problems(loaded: LoadedPolicy) -> list[Problem]:
    """Queries the Prometheus source would refuse at run time (``{{ service }}`` in a raw string
    or a comment), found now by filling each template with a probe name."""
    problems = []
    for index, metric in enumerate(loaded.policy.spec.metrics):
        if metric.prometheus is None:
            continue
        try:
            fill(metric.prometheus.query, "probe")
        except TemplateError as exc:
            where: YamlPath = ("spec", "metrics", index, "prometheus", "query")
            line = _line_in_file(loaded, where)
            problems.append(Problem(loaded.path, line, None, format_path(where), str(exc)))
    return problems


def _line_in_file(loaded: LoadedPolicy, where: YamlPath) -> int:
    documents, _ = parse_documents(loaded.path.read_text(encoding="utf-8"), loaded.path)
    document = next((d for d in documents if d.line == loaded.line), None)
    return loaded.line if document is None else document.line_of(where)


def summarise(loaded: LoadedPolicy) -> str:
    """One line: name, what it scales, replica range, and each metric with its target."""
    policy = loaded.policy
    metrics = ", ".join(_metric_text(m) for m in policy.spec.metrics)
    return (
        f"{policy.name}: {_scaled(policy)}, replicas {policy.spec.min_replicas}..{policy.spec.max_replicas}, "
        f"metrics: {metrics}{_extras(policy)}  ({loaded.path}:{loaded.line})"
    )


def _extras(policy: ScalingPolicy) -> str:
    """Fallback and schedules, when the policy has them (they change what a reader expects)."""
    spec = policy.spec
    text = ""
    if spec.fallback is not None:
        f = spec.fallback
        text += f"; fallback {f.behavior.value} {f.replicas} after {f.failure_threshold} failed reads"
    if spec.schedules:
        text += "; schedules: " + ", ".join(f"{s.name} (min {s.min_replicas})" for s in spec.schedules)
    return text


def _scaled(policy: ScalingPolicy) -> str:
    spec = policy.spec
    if spec.service is not None:
        return f"service {spec.service}"
    assert spec.selector is not None
    return "selector " + ",".join(f"{k}={v}" for k, v in sorted(spec.selector.labels.items()))


def _metric_text(metric: MetricSpec) -> str:
    source = f"ipvs {metric.ipvs.counter}" if metric.ipvs is not None else "prometheus"
    target = "averageValue" if metric.target.kind == "AverageValue" else "value"
    return f"{metric.name} ({source}) {target} {metric.target.amount:g}"


def _report_problems(problems: list[Problem], output: str) -> None:
    if output == "json":
        body = {"valid": False, "policies": [], "problems": [p.as_dict() for p in problems]}
        print(json.dumps(body, indent=2))
        return
    for problem in problems:
        print(problem)
    count = len(problems)
    print(f"{count} problem{'s' if count != 1 else ''} found", file=sys.stderr)


def _as_json(loaded: LoadedPolicy) -> dict[str, object]:
    return {
        "name": loaded.policy.name,
        "path": str(loaded.path),
        "line": loaded.line,
        "policy": loaded.policy.model_dump(mode="json", by_alias=True, exclude_none=True),
    }
