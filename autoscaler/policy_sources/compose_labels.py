"""The ``deploy.labels`` of each service of a stack (compose) file, as ``docker stack deploy`` sets them.

Both compose forms are read: a list of ``key=value`` strings and a mapping. Values are
interpolated from the environment the way ``docker stack deploy`` does (``$VAR``,
``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``$$``), so a CI job checks what would
really be deployed. Every label remembers its line for ``file:line`` messages.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from autoscaler.policy_sources.problems import Problem
from autoscaler.policy_sources.yaml_documents import YamlDocument, parse_documents

_VARIABLE = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>.*))?$", re.DOTALL)


@dataclass(frozen=True)
class StackService:
    """One service of a stack file: its deployed name and its labels with their lines."""

    name: str
    line: int  # where the service's labels are (or the service, without labels)
    labels: dict[str, str]
    lines: dict[str, int] = field(default_factory=dict)

    def line_of(self, label: str) -> int:
        """The label's line; for a part set by several labels (a metric), the first of them."""
        if label in self.lines:
            return self.lines[label]
        inside = [line for key, line in self.lines.items() if key.startswith(label + ".")]
        return min(inside, default=self.line)


def read_stack_file(
    path: Path, *, stack: str | None = None, environ: Mapping[str, str] | None = None
) -> tuple[list[StackService], list[Problem]]:
    """The services of a stack file, named ``STACK_service`` when ``stack`` is given."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Problem(path, 0, None, "", f"cannot read: {exc}")]
    documents, problems = parse_documents(text, path)
    if problems:
        return [], problems
    if len(documents) != 1 or not isinstance(documents[0].data, dict):
        return [], [Problem(path, 1, None, "", "not a stack file: expected one mapping with 'services:'")]
    document = documents[0]
    services = document.data.get("services") if isinstance(document.data, dict) else None
    if not isinstance(services, dict):
        return [], [Problem(path, document.line, None, "services", "no 'services:' mapping in this file")]
    env = os.environ if environ is None else environ
    found: list[StackService] = []
    for key, body in services.items():
        name = f"{stack}_{key}" if stack else str(key)
        service, service_problems = _service(document, path, str(key), name, body, env)
        found.append(service)
        problems.extend(service_problems)
    return found, problems


def _service(
    document: YamlDocument, path: Path, key: str, name: str, body: object, env: Mapping[str, str]
) -> tuple[StackService, list[Problem]]:
    at = ("services", key, "deploy", "labels")
    deploy = body.get("deploy") if isinstance(body, dict) else None
    given = deploy.get("labels") if isinstance(deploy, dict) else None
    labels: dict[str, str] = {}
    lines: dict[str, int] = {}
    problems: list[Problem] = []
    if isinstance(given, list):
        for index, item in enumerate(given):
            line = document.line_of((*at, index))
            if not isinstance(item, str):
                message = (
                    f"service {name}: YAML did not read this item as key=value text (a value with ': ' "
                    'or a flow value reads as a mapping); quote the whole item: - "key=value"'
                )
                problems.append(Problem(path, line, None, "", message))
                continue
            label, _, value = _interpolate(item, env).partition("=")
            labels[label], lines[label] = value, line
    elif isinstance(given, dict):
        for label_key, value in given.items():
            line = document.line_of((*at, label_key))
            label = _interpolate(str(label_key), env)
            if isinstance(value, bool):
                word = "true" if value else "false"
                problems.append(
                    Problem(
                        path,
                        line,
                        None,
                        "",
                        f"service {name}: label {label}: YAML reads {word} as a boolean and docker stack "
                        f"deploy refuses it; quote it: '{word}'",
                    )
                )
                value = word  # checked further as if quoted, so one slip does not hide the rest
            text = "" if value is None else value if isinstance(value, str) else str(value)
            labels[label], lines[label] = _interpolate(text, env), line
    elif given is not None:
        message = f"service {name}: deploy.labels must be a list of key=value or a mapping"
        problems.append(Problem(path, document.line_of(at), None, "", message))
    return StackService(name, document.line_of(at), labels, lines), problems


def _interpolate(text: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        plain = match.group("plain")
        if plain is not None:
            return env.get(plain, "")
        braced = _BRACED.match(match.group("braced") or "")
        if braced is None:
            return match.group(0)  # not a variable docker knows either; left for the checks to show
        value = env.get(braced["name"])
        default = braced["default"]
        if braced["op"] == ":-" and not value:
            return default
        if braced["op"] == "-" and value is None:
            return default
        return value or ""

    return _VARIABLE.sub(replace, text)
