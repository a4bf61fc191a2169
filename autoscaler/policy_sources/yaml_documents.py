"""Parse a YAML stream into documents that remember the line of every key.

PyYAML's ``safe_load_all`` throws the node marks away and silently keeps the last of two
equal keys; an operator then edits the first one and nothing changes. So we compose the
node tree ourselves, report duplicate keys, and keep a map from each YAML path (the same
shape as pydantic's error ``loc``) to its line, before constructing plain Python data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import yaml

from autoscaler.policy_sources.problems import Problem, clip
from autoscaler.policy_sources.yaml_limits import check_limits


class _Composer(Protocol):
    """The part of a PyYAML loader (pure or libyaml) that parses events and builds node trees."""

    def check_node(self) -> bool: ...
    def get_node(self) -> yaml.Node | None: ...
    def check_event(self) -> bool: ...
    def get_event(self) -> yaml.Event: ...
    def resolve(self, kind: type[yaml.Node], value: str, implicit: tuple[bool, bool]) -> str: ...
    def dispose(self) -> None: ...


# A YAML path as pydantic reports it: mapping keys are strings, sequence items are ints.
YamlPath = tuple[str | int, ...]

_MERGE_KEY = "<<"

# libyaml parses policy files about 10x faster than pure Python (it matters when hundreds
# of files load at start-up); it is optional in PyYAML builds, hence the fallback.
_FAST_LOADER: Callable[[str], _Composer] | None = getattr(yaml, "CSafeLoader", None)

# PyYAML's wording for the usual slips, followed by what the operator most likely did.
_SYNTAX_HINTS = (
    (
        "mapping values are not allowed",
        "; is this line indented deeper than the key above it, or does a value contain ': ' and need quotes?",
    ),
    ("found character '\\t'", "; YAML indentation must use spaces, not tabs"),
    ("could not find expected ':'", "; a key is missing its ':', or a quoted value is not closed"),
)


@dataclass(frozen=True)
class YamlDocument:
    """One ``---``-separated document of a file."""

    data: object
    number: int  # 1-based position in the file, for messages
    line: int  # where the document's content starts
    lines: dict[YamlPath, int] = field(repr=False)

    def line_of(self, path: YamlPath) -> int:
        """Line of ``path``, or of its nearest existing parent (a missing field's mapping)."""
        for end in range(len(path), -1, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return self.line


def format_path(path: YamlPath) -> str:
    """``("spec", "metrics", 0, "target")`` -> ``spec.metrics[0].target``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            name = clip(str(part))  # a key can be any text the file holds
            text += f".{name}" if text else name
    return text


def parse_documents(text: str, path: Path) -> tuple[list[YamlDocument], list[Problem]]:
    """Every non-empty document of ``text``, and the problems found while reading it.

    A syntax error stops the parser, so the documents before it are still returned (and
    validated by the caller) and the error is the last problem. A file beyond the bounds
    of ``yaml_limits`` (alias expansion, nesting, number length) gives only that problem.
    """
    loaders = [yaml.SafeLoader] if _FAST_LOADER is None else [_FAST_LOADER, yaml.SafeLoader]
    refused = check_limits(loaders, text, path)
    if refused:
        return [], refused
    if _FAST_LOADER is not None:
        try:
            return _parse_with(_FAST_LOADER, text, path, raise_syntax_errors=True)
        except yaml.YAMLError:
            pass  # libyaml words errors differently; the pure parser's wording is what we explain
    return _parse_with(yaml.SafeLoader, text, path, raise_syntax_errors=False)


def _parse_with(
    loader_class: Callable[[str], _Composer], text: str, path: Path, *, raise_syntax_errors: bool
) -> tuple[list[YamlDocument], list[Problem]]:
    documents: list[YamlDocument] = []
    problems: list[Problem] = []
    try:
        for number, node in enumerate(_compose_all(loader_class, text), start=1):
            if _is_empty(node):
                continue  # a stray '---' at the end of a file is common and harmless
            lines: dict[YamlPath, int] = {}
            _index_lines(node, (), lines, problems, path, set())
            data = yaml.SafeLoader("").construct_document(node)
            documents.append(YamlDocument(data, number, node.start_mark.line + 1, lines))
    except yaml.MarkedYAMLError as exc:
        if raise_syntax_errors:
            raise
        problems.append(_syntax_problem(exc, path, len(text)))
    except yaml.YAMLError as exc:  # unmarked: reader errors such as bad bytes
        if raise_syntax_errors:
            raise
        problems.append(Problem(path, 1, None, "", f"not readable as YAML: {exc}"))
    return documents, problems


def _compose_all(loader_class: Callable[[str], _Composer], text: str) -> Iterator[yaml.Node]:
    loader = loader_class(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                yield node
    finally:
        loader.dispose()


def _is_empty(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null" and not node.value


def _syntax_problem(exc: yaml.MarkedYAMLError, path: Path, text_length: int) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    if mark is not None and mark.index >= text_length and exc.context_mark is not None:
        # "unexpected end of stream" points past the last line; where the unfinished
        # thing (a quoted string, a flow list) began is where the operator must look.
        mark = exc.context_mark
    line = mark.line + 1 if mark is not None else 1
    column = mark.column + 1 if mark is not None else None
    what = exc.problem or "invalid YAML"
    hint = next((h for start, h in _SYNTAX_HINTS if what.startswith(start)), "")
    if exc.context:
        context = exc.context
        if exc.context_mark is not None and exc.context_mark.line + 1 != line:
            context += f" at line {exc.context_mark.line + 1}"
        what = f"{what} ({context})"
    return Problem(path, line, column, "", f"YAML syntax error: {what}{hint}")


def _index_lines(
    node: yaml.Node,
    at: YamlPath,
    lines: dict[YamlPath, int],
    problems: list[Problem],
    path: Path,
    indexed: set[int],
) -> None:
    lines.setdefault(at, node.start_mark.line + 1)
    if id(node) in indexed:
        # An alias of a node indexed already (or a recursive one, &a [*a]): descending again
        # would repeat its duplicate-key problems and, for nested aliases, take exponential
        # time. Errors below this path point at the line that uses the alias.
        return
    indexed.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # complex keys never match a policy field; pydantic reports them
            key = str(key_node.value)
            key_line = key_node.start_mark.line + 1
            if key in first_seen and key != _MERGE_KEY:
                problems.append(
                    Problem(
                        path,
                        key_line,
                        None,
                        format_path((*at, key)),
                        f"duplicate key '{key}' (first given at line {first_seen[key]}); "
                        "YAML would silently keep only the last one, so remove one of them",
                    )
                )
                continue
            first_seen[key] = key_line
            lines[(*at, key)] = key_line
            _index_lines(value_node, (*at, key), lines, problems, path, indexed)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index_lines(item, (*at, index), lines, problems, path, indexed)
