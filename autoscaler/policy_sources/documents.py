"""From the text of one file to validated policies, or to every problem in it.

Also the checks that span documents (one service, one name), which the loader runs over
all files at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from autoscaler.core.policy import API_VERSION, KIND, ScalingPolicy
from autoscaler.policy_sources.messages import allowed_fields, describe, suggest
from autoscaler.policy_sources.problems import Problem, clip
from autoscaler.policy_sources.yaml_documents import YamlDocument, YamlPath, format_path, parse_documents

# The one template a query may use; anything else in {{ }} is a typo or a Helm/Jinja leftover.
_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_SERVICE_TEMPLATE = re.compile(r"^\s*service\s*$")


@dataclass(frozen=True)
class LoadedPolicy:
    """A valid policy and where it came from (for messages and hot reload)."""

    policy: ScalingPolicy
    path: Path
    line: int


@dataclass(frozen=True)
class PolicyPlaces:
    """A loaded policy with the lines of the fields other policies may collide on."""

    loaded: LoadedPolicy
    name_line: int
    claim_line: int  # the line of spec.service or spec.selector


def parse_policy_text(text: str, path: Path) -> tuple[list[PolicyPlaces], list[Problem]]:
    """The valid policies of one file and the problems of the others.

    Collisions between policies are not checked here: the caller checks them over every
    file it loads (see ``check_collisions``).
    """
    documents, problems = parse_documents(text, path)
    if not documents and not problems:
        problems.append(
            Problem(path, 1, None, "", "file is empty: expected one or more ScalingPolicy documents")
        )
    places: list[PolicyPlaces] = []
    for document in documents:
        place, found = _validate_document(document, path)
        problems.extend(found)
        if place is not None:
            places.append(place)
    problems.sort(key=lambda p: (p.line, p.column or 0))
    return places, problems


def check_collisions(places: list[PolicyPlaces]) -> list[tuple[PolicyPlaces, Problem]]:
    """Policies that reuse an earlier policy's name or service, with the problem to report.

    The later policy (in load order) is the one blamed; the message names the earlier one.
    """
    found: list[tuple[PolicyPlaces, Problem]] = []
    names: dict[str, PolicyPlaces] = {}
    claims: dict[tuple[str, object], PolicyPlaces] = {}
    for place in places:
        policy = place.loaded.policy
        first = names.setdefault(policy.name, place)
        if first is not place:
            found.append(
                (
                    place,
                    Problem(
                        place.loaded.path,
                        place.name_line,
                        None,
                        "metadata.name",
                        f"policy name '{policy.name}' is already used at "
                        f"{_at(first.loaded, first.name_line)}; "
                        "names must be unique across all loaded files",
                    ),
                )
            )
            continue
        claim, field, what = _claim(policy)
        owner = claims.setdefault(claim, place)
        if owner is not place:
            found.append(
                (
                    place,
                    Problem(
                        place.loaded.path,
                        place.claim_line,
                        None,
                        field,
                        f"{what} is already scaled by policy '{owner.loaded.policy.name}' at "
                        f"{_at(owner.loaded, owner.claim_line)}; a service can have only one policy "
                        "(put all its metrics in one policy)",
                    ),
                )
            )
    return found


def _claim(policy: ScalingPolicy) -> tuple[tuple[str, object], str, str]:
    spec = policy.spec
    if spec.service is not None:
        return ("service", spec.service), "spec.service", f"service '{spec.service}'"
    assert spec.selector is not None  # the model guarantees exactly one of the two
    labels = spec.selector.labels
    shown = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return ("selector", frozenset(labels.items())), "spec.selector", f"the selector {{{shown}}}"


def _at(loaded: LoadedPolicy, line: int) -> str:
    return f"{loaded.path}:{line}"


def _validate_document(document: YamlDocument, path: Path) -> tuple[PolicyPlaces | None, list[Problem]]:
    data = document.data
    if not isinstance(data, dict):
        return None, [
            Problem(
                path,
                document.line,
                None,
                "",
                f"document {document.number} is {_kind_of(data)}, not a mapping; a policy is a mapping "
                f"that starts with 'apiVersion: {API_VERSION}' and 'kind: {KIND}'",
            )
        ]
    wrong_header = _check_header(document, path)
    if wrong_header:
        # Another kind of manifest: its fields would only add noise.
        return None, wrong_header
    problems = _check_templates(document, path)
    try:
        policy = ScalingPolicy.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as exc:
        errors = _without_knock_on_errors(exc.errors())
        problems.extend(_problem_from(error, document, path) for error in errors)
        return None, problems
    if problems:
        return None, problems
    loaded = LoadedPolicy(policy, path, document.line)
    claim_field = "service" if policy.spec.service is not None else "selector"
    return (
        PolicyPlaces(
            loaded,
            document.line_of(("metadata", "name")),
            document.line_of(("spec", claim_field)),
        ),
        [],
    )


def _check_header(document: YamlDocument, path: Path) -> list[Problem]:
    assert isinstance(document.data, dict)
    problems = []
    for key, expected in (("apiVersion", API_VERSION), ("kind", KIND)):
        given = document.data.get(key)
        if given is not None and given != expected:
            problems.append(
                Problem(
                    path,
                    document.line_of((key,)),
                    None,
                    key,
                    f"{_quoted(given)} is not supported; this autoscaler reads only '{key}: {expected}'",
                )
            )
    return problems


def _check_templates(document: YamlDocument, path: Path) -> list[Problem]:
    assert isinstance(document.data, dict)
    spec = document.data.get("spec")
    metrics = spec.get("metrics") if isinstance(spec, dict) else None
    if not isinstance(metrics, list):
        return []
    problems = []
    for index, metric in enumerate(metrics):
        source = metric.get("prometheus") if isinstance(metric, dict) else None
        query = source.get("query") if isinstance(source, dict) else None
        if not isinstance(query, str):
            continue
        where: YamlPath = ("spec", "metrics", index, "prometheus", "query")
        for message in _template_mistakes(query):
            problems.append(Problem(path, document.line_of(where), None, format_path(where), message))
    return problems


def _template_mistakes(query: str) -> list[str]:
    mistakes = [
        f"unknown template '{{{{{match.group(1)}}}}}'; the only template a query may use is "
        "'{{ service }}' (the service name)"
        for match in _TEMPLATE.finditer(query)
        if not _SERVICE_TEMPLATE.match(match.group(1))
    ]
    if "{{" in _TEMPLATE.sub("", query):
        mistakes.append("'{{' is never closed with '}}'; the only template is '{{ service }}'")
    return mistakes


def _without_knock_on_errors(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """Drop errors that only repeat another one.

    A list whose items all failed is also "too short"; a misspelt required field is also
    "missing". The operator needs only the item errors and the "did you mean" one.
    """
    misspelt: set[YamlPath] = set()
    for error in errors:
        if error["type"] == "extra_forbidden":
            loc: YamlPath = tuple(error["loc"])
            meant = suggest(str(loc[-1]), allowed_fields(ScalingPolicy, loc[:-1]))
            if meant is not None:
                misspelt.add((*loc[:-1], meant))

    def knock_on(error: ErrorDetails) -> bool:
        given = error.get("input")
        if error["type"] == "too_short" and isinstance(given, list) and len(given) > 0:
            return True
        return error["type"] == "missing" and tuple(error["loc"]) in misspelt

    return [error for error in errors if not knock_on(error)]


def _problem_from(error: ErrorDetails, document: YamlDocument, path: Path) -> Problem:
    loc: YamlPath = tuple(error["loc"])
    return Problem(path, document.line_of(loc), None, format_path(loc), describe(error, ScalingPolicy))


def _kind_of(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text '{clip(value, 40)}'"
    return f"the value {clip(repr(value))}"


def _quoted(value: object) -> str:
    """A header value in a message: never the expansion of a mapping or list."""
    if isinstance(value, str):
        return f"'{clip(value)}'"
    if isinstance(value, dict | list):
        return "a mapping" if isinstance(value, dict) else "a list"
    return f"'{clip(str(value))}'"
