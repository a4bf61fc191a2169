"""A service's policy from its own labels (``autoscaler.enable=true``), or every problem with them.

The labels become the same data a policy file holds, and go through the same model
(``ScalingPolicy``), the same template checks and the same error wording as files. Only the
place differs: ``service web: label autoscaler.maxReplica: ...`` instead of ``file:line``.
The policy's name is the service's name, and it scales that service only. See
``label_paths`` for the grammar; the pause labels (``autoscaler.paused``...) are read by
``label_controls`` and are not policy fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from autoscaler.core.policy import API_VERSION, KIND, PolicySpec, ScalingPolicy
from autoscaler.policy_sources.documents import _template_mistakes, _without_knock_on_errors
from autoscaler.policy_sources.label_controls import CONTROL_KEYS, ENABLE, PREFIX, RESERVED_PREFIXES, is_true
from autoscaler.policy_sources.label_paths import LabelPath, LabelPathError, Target, keyed_element, resolve
from autoscaler.policy_sources.messages import describe
from autoscaler.policy_sources.yaml_documents import format_path

# Set by the controller from the service itself: a label cannot point a policy elsewhere.
_IMPLIED_FIELDS = ("service", "selector")
_IMPLIED_WHY = "the policy scales the service that carries the labels"


@dataclass(frozen=True)
class LabelProblem:
    """One thing wrong with one service's labels. ``label`` is the full key (``autoscaler.x``)."""

    service: str
    label: str
    message: str

    def __str__(self) -> str:
        if self.label:
            return f"service {self.service}: label {self.label}: {self.message}"
        return f"service {self.service}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"service": self.service, "label": self.label, "message": self.message}


def enabled(labels: Mapping[str, str]) -> bool:
    """Whether the service asks to be governed by its labels (``autoscaler.enable=true``)."""
    return is_true(labels.get(ENABLE))


def policy_keys(labels: Mapping[str, str]) -> dict[str, str]:
    """The labels that describe a policy (``autoscaler.*`` minus the control and lease keys)."""
    return {
        key: value
        for key, value in labels.items()
        if key.startswith(PREFIX) and key not in CONTROL_KEYS and not key.startswith(RESERVED_PREFIXES)
    }


def policy_from_labels(
    service: str, labels: Mapping[str, str]
) -> tuple[ScalingPolicy | None, list[LabelProblem]]:
    """The policy the labels describe, or None and every problem found (sorted by label)."""
    data, where, problems, meant = _assemble(service, policy_keys(labels))
    problems.extend(_template_problems(service, data, where))
    document = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": service},
        "spec": {**data, "service": service},
    }
    try:
        policy = ScalingPolicy.model_validate(document, by_alias=True, by_name=False)
    except ValidationError as exc:
        for error in _without_knock_on_errors(exc.errors()):
            if error["type"] == "missing" and where.path_of(tuple(error["loc"])[1:]) in meant:
                continue  # the misspelt label above already says what to write
            problems.append(_problem_from(service, error, where))
        return None, _sorted(problems)
    if problems:
        return None, _sorted(problems)
    return policy, []


def _template_problems(service: str, data: dict[str, Any], where: _Places) -> list[LabelProblem]:
    """The same ``{{ service }}`` checks a file's queries get."""
    problems: list[LabelProblem] = []
    metrics = data.get("metrics")
    for index, metric in enumerate(metrics if isinstance(metrics, list) else []):
        source = metric.get("prometheus") if isinstance(metric, dict) else None
        query = source.get("query") if isinstance(source, dict) else None
        if isinstance(query, str):
            label = where.label_of(("metrics", index, "prometheus", "query"))
            problems.extend(LabelProblem(service, label, m) for m in _template_mistakes(query))
    return problems


class _Places:
    """Which label gave which part of the assembled data, to put pydantic's errors back on labels."""

    def __init__(self) -> None:
        self.labels: dict[LabelPath, str] = {}  # label path -> the label key that set it
        self.names: dict[tuple[LabelPath, int], str] = {}  # (keyed list path, index) -> item name

    def label_of(self, loc: tuple[str | int, ...]) -> str:
        """The label key for a model location (``("metrics", 0, "target")``)."""
        path, rest = self._label_path(loc)
        for end in range(len(path), 0, -1):
            key = self.labels.get(path[:end])
            if key is not None:
                inside = format_path((*path[end:], *rest))
                return f"{key} (at {inside})" if inside else key
        return PREFIX + ".".join((*path, *(str(r) for r in rest)))

    def path_of(self, loc: tuple[str | int, ...]) -> LabelPath | None:
        """The label path of a model location, when every list index in it is a keyed item."""
        path, rest = self._label_path(loc)
        return None if rest else path

    def _label_path(self, loc: tuple[str | int, ...]) -> tuple[LabelPath, tuple[str | int, ...]]:
        path: list[str] = []
        for position, part in enumerate(loc):
            if isinstance(part, int):
                name = self.names.get((tuple(path), part))
                if name is None:
                    return tuple(path), loc[position:]
                path.append(name)
                if loc[position + 1 :] == ("name",):
                    break  # the item's name is the key itself: autoscaler.metrics.NAME
            else:
                path.append(part)
        return tuple(path), ()


def _assemble(
    service: str, keys: Mapping[str, str]
) -> tuple[dict[str, Any], _Places, list[LabelProblem], set[LabelPath]]:
    """Nested data for ``PolicySpec`` from the labels; keyed lists become lists sorted by name.

    Also the paths that misspelt keys most likely meant.
    """
    data: dict[str, Any] = {}
    where = _Places()
    problems: list[LabelProblem] = []
    meant: set[LabelPath] = set()
    keyed: set[LabelPath] = set()
    for key in sorted(keys):
        parts = tuple(key[len(PREFIX) :].split("."))
        if any(not part for part in parts):
            problems.append(
                LabelProblem(service, key, "empty segment in the key (two dots, or a dot at an end)")
            )
            continue
        if parts[0] in _IMPLIED_FIELDS:
            problems.append(LabelProblem(service, key, f"not allowed in labels: {_IMPLIED_WHY}"))
            continue
        try:
            target = resolve(PolicySpec, parts, PREFIX)
        except LabelPathError as exc:
            problems.append(LabelProblem(service, key, str(exc)))
            if exc.meant is not None:
                meant.add(exc.meant)
                keyed.update(_keep_parents(data, exc.meant))
            continue
        try:
            value = _value(keys[key], target)
        except ValueError as exc:
            problems.append(LabelProblem(service, key, str(exc)))
            continue
        clash = _place(data, target.path, value, where, key)
        if clash is not None:
            problems.append(LabelProblem(service, key, clash))
            continue
        where.labels[target.path] = key
        keyed.update(target.keyed_lists)
    for path in sorted(keyed, key=len, reverse=True):  # inner lists first
        problems.extend(_keyed_to_list(service, data, path, where))
    return data, where, problems, meant


# libyaml reads a label value about 10x faster than pure Python (1,000 labelled services are
# parsed on the first pass); its error wording differs, so a failure is re-read by the pure one.
_FAST_LOADER: Any = getattr(yaml, "CSafeLoader", None)


def _keep_parents(data: dict[str, Any], meant: LabelPath) -> tuple[LabelPath, ...]:
    """Make the mappings above a misspelt key exist, as a file's would (``prometheus: {qery: x}``).

    Without them a dropped label would also empty its parent, and the model would add a
    knock-on error (``give exactly one metric source``) to the one that matters.
    """
    parents = meant[:-1]
    if not parents:
        return ()
    node = data
    for part in parents:
        inner = node.setdefault(part, {})
        if not isinstance(inner, dict):
            return ()  # set whole by a flow value: nothing to keep
        node = inner
    return resolve(PolicySpec, parents, PREFIX).keyed_lists


def _value(raw: str, target: Target) -> object:
    if target.text:
        return raw
    if not raw.strip():
        return None
    if _FAST_LOADER is not None:
        try:
            return yaml.load(raw, Loader=_FAST_LOADER)  # CSafeLoader: the safe loader, in C
        except yaml.YAMLError:
            pass
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"not a valid YAML value ({problem}): {raw!r}") from None


def _place(data: dict[str, Any], path: LabelPath, value: object, where: _Places, key: str) -> str | None:
    """Put ``value`` at ``path``; a message when another label already set this or a part of it."""
    node = data
    for depth, part in enumerate(path[:-1]):
        inner = node.setdefault(part, {})
        if not isinstance(inner, dict) or path[: depth + 1] in where.labels:
            whole = where.labels.get(path[: depth + 1], "?")
            return f"conflicts with label {whole}, which sets all of it; keep one"
        node = inner
    if path[-1] in node:
        under = sorted(k for p, k in where.labels.items() if p[: len(path)] == path)
        return f"conflicts with label {under[0] if under else '?'}, which sets a part of it; keep one"
    node[path[-1]] = value
    return None


def _keyed_to_list(service: str, data: dict[str, Any], path: LabelPath, where: _Places) -> list[LabelProblem]:
    """``{"rps": {...}}`` at ``path`` -> ``[{"name": "rps", ...}]`` (order: by name)."""
    parent: Any = data
    for part in path[:-1]:
        parent = parent.get(part) if isinstance(parent, dict) else None
    items = parent.get(path[-1]) if isinstance(parent, dict) else None
    if not isinstance(items, dict):
        return []
    problems: list[LabelProblem] = []
    listed: list[object] = []
    for index, name in enumerate(sorted(items)):
        item = items[name]
        if isinstance(item, dict):
            given = item.get("name", name)
            if given != name:
                key = where.labels.get((*path, name), PREFIX + ".".join((*path, name)))
                problems.append(
                    LabelProblem(service, key, f"name {given!r} differs from the key's {name!r}; drop it")
                )
            item = {"name": name, **{k: v for k, v in item.items() if k != "name"}}
        listed.append(item)
        where.names[(path, index)] = name
    parent[path[-1]] = listed
    return problems


def _problem_from(service: str, error: ErrorDetails, where: _Places) -> LabelProblem:
    loc = tuple(error["loc"])
    if loc[:1] == ("spec",):
        loc = loc[1:]
    label = where.label_of(loc)
    if error["type"] == "missing" and " (at " not in label:
        if len(loc) == 1 and loc[0] in keyed_list_fields():
            example = f"{label}.NAME.FIELD=VALUE"
            return LabelProblem(service, label, f"missing; add at least one, keyed by its name: {example}")
        return LabelProblem(service, label, "missing; this field is required")
    if error["type"] == "extra_forbidden" and " (at " not in label:
        return LabelProblem(service, label, "unknown field")
    return LabelProblem(service, label, describe(error, ScalingPolicy))


def _sorted(problems: list[LabelProblem]) -> list[LabelProblem]:
    return sorted(problems, key=lambda p: p.label)


def keyed_list_fields() -> list[str]:
    """The top-level fields keyed by name in labels (for docs and tests)."""
    fields = PolicySpec.model_fields.items()
    return [info.alias or name for name, info in fields if keyed_element(info.annotation) is not None]
