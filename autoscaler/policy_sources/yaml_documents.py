"""Parse a YAML stream into documents that remember the line of every key.

PyYAML's ``safe_load_all`` throws the node marks away and silently keeps the last of two
equal keys; an operator then edits the first one and nothing changes. So we compose the
node tree ourselves, report duplicate keys, and keep the tree to find the line of a YAML
path (the same shape as pydantic's error ``loc``) when a message needs one, after
constructing plain Python data from the same tree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import yaml

from autoscaler.policy_sources.problems import Problem, clip
from autoscaler.policy_sources.yaml_limits import check_limits, exceeds_limits


class _Loader(Protocol):
    """The part of a PyYAML loader (pure or libyaml) that parses events, composes and constructs."""

    def check_node(self) -> bool: ...
    def get_node(self) -> yaml.Node | None: ...
    def check_event(self) -> bool: ...
    def get_event(self) -> yaml.Event: ...
    def resolve(self, kind: type[yaml.Node], value: str, implicit: tuple[bool, bool]) -> str: ...
    def construct_document(self, node: yaml.Node) -> object: ...
    def dispose(self) -> None: ...


# A YAML path as pydantic reports it: mapping keys are strings, sequence items are ints.
YamlPath = tuple[str | int, ...]

_MERGE_KEY = "<<"

# libyaml parses policy files about 10x faster than pure Python (it matters when thousands
# of files load at start-up); it is optional in PyYAML builds, hence the fallback.
_FAST_LOADER: Callable[[str], _Loader] | None = getattr(yaml, "CSafeLoader", None)

# PyYAML's wording for the usual slips, followed by what the operator most likely did.
_SYNTAX_HINTS = (
    (
        "mapping values are not allowed",
        "; is this line indented deeper than the key above it, or does a value contain ': ' and need quotes?",
    ),
    ("found character '\\t'", "; YAML indentation must use spaces, not tabs"),
    ("could not find expected ':'", "; a key is missing its ':', or a quoted value is not closed"),
)


@dataclass
class AsWritten:
    """What constructing the data loses of the tree as the file wrote it; ``line_of`` needs it."""

    # (id of a mapping or sequence node, position in its value) of every use of an alias:
    # the node found there was met earlier in the file, where its anchor is.
    aliases: set[tuple[int, int]] = field(default_factory=set)
    # id of a mapping with a '<<' key -> its entries as composed: PyYAML's constructor
    # merges the '<<' entries into the node itself.
    merging: dict[int, list[tuple[yaml.Node, yaml.Node]]] = field(default_factory=dict)

    def entries(self, node: yaml.MappingNode) -> list[tuple[yaml.Node, yaml.Node]]:
        as_composed = self.merging.get(id(node))
        return node.value if as_composed is None else as_composed


@dataclass(frozen=True)
class YamlDocument:
    """One ``---``-separated document of a file, with the node tree its data came from."""

    data: object
    number: int  # 1-based position in the file, for messages
    line: int  # where the document's content starts
    node: yaml.Node = field(repr=False)
    written: AsWritten = field(repr=False)

    def line_of(self, path: YamlPath) -> int:
        """Line of ``path``, or of its nearest existing parent (a missing field's mapping).

        Of two equal keys, the first (the other is a problem already). Below an alias, the
        line that uses the alias: the anchored part may be shared by several fields.
        """
        node, line = self.node, self.line
        for part in path:
            step = _step(node, part, self.written)
            if step is None:
                break
            position, child, line = step
            if (id(node), position) in self.written.aliases:
                break
            node = child
        return line


def _step(node: yaml.Node, part: str | int, written: AsWritten) -> tuple[int, yaml.Node, int] | None:
    """Where ``part`` of a path leads from ``node``: its position there, its node, its line."""
    if isinstance(node, yaml.MappingNode) and isinstance(part, str):
        for position, (key_node, value_node) in enumerate(written.entries(node)):
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == part:
                return position, value_node, key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        item = node.value[part]
        return part, item, item.start_mark.line + 1
    return None


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
    loaders: list[Callable[[str], _Loader]] = [yaml.SafeLoader]
    if _FAST_LOADER is not None:
        loaders.insert(0, _FAST_LOADER)
        try:
            return _parse_composed_first(_FAST_LOADER, loaders, text, path)
        except yaml.YAMLError:
            pass  # libyaml words errors differently; the pure parser's wording is what we explain
    refused = check_limits(loaders, text, path)
    if refused:
        return [], refused
    return _parse_one_by_one(yaml.SafeLoader, text, path)


def _parse_composed_first(
    loader_class: Callable[[str], _Loader], loaders: list[Callable[[str], _Loader]], text: str, path: Path
) -> tuple[list[YamlDocument], list[Problem]]:
    """libyaml: every document composed, the bounds checked on the trees, then constructed.

    Raises ``yaml.YAMLError`` for any error: the caller parses again with the pure parser.
    """
    loader = loader_class(text)
    try:
        nodes = _compose_all(loader)
        if any(exceeds_limits(node) for node in nodes):
            # The tree keeps no alias's name or line; the event stream, read again, does.
            # It is also what decided before the tree was checked: were the two ever to
            # disagree, the file would load as it did then.
            refused = check_limits(loaders, text, path)
            if refused:
                return [], refused
        documents: list[YamlDocument] = []
        problems: list[Problem] = []
        for number, node in enumerate(nodes, start=1):
            if not _is_empty(node):  # a stray '---' at the end of a file is common and harmless
                document = _document(loader, node, number, path, problems)
                if document is not None:
                    documents.append(document)
        return documents, problems
    finally:
        loader.dispose()


def _parse_one_by_one(
    loader_class: Callable[[str], _Loader], text: str, path: Path
) -> tuple[list[YamlDocument], list[Problem]]:
    """The pure parser, document by document: those before a syntax error are kept."""
    documents: list[YamlDocument] = []
    problems: list[Problem] = []
    loader = loader_class(text)
    number = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            number += 1
            if not _is_empty(node):  # a stray '---' at the end of a file is common and harmless
                document = _document(loader, node, number, path, problems)
                if document is not None:
                    documents.append(document)
    except yaml.MarkedYAMLError as exc:
        problems.append(_syntax_problem(exc, path, len(text)))
    except yaml.YAMLError as exc:  # unmarked: reader errors such as bad bytes
        problems.append(Problem(path, 1, None, "", f"not readable as YAML: {exc}"))
    finally:
        loader.dispose()
    return documents, problems


def _compose_all(loader: _Loader) -> list[yaml.Node]:
    nodes = []
    while loader.check_node():
        node = loader.get_node()
        if node is not None:
            nodes.append(node)
    return nodes


def _document(
    loader: _Loader, node: yaml.Node, number: int, path: Path, problems: list[Problem]
) -> YamlDocument | None:
    """The document's data, or None with a problem when a tagged value is not of its tag."""
    written = AsWritten()
    _check_keys(node, (), path, problems, set(), written)  # before constructing: see AsWritten
    try:
        data = loader.construct_document(node)
    except ValueError:
        refused = _refused_scalar(node)
        if refused is None:
            raise
        problems.append(_tag_problem(*refused, path))
        return None
    return YamlDocument(data, number, node.start_mark.line + 1, node, written)


def _refused_scalar(node: yaml.Node) -> tuple[yaml.ScalarNode, ValueError] | None:
    """The first scalar, in file order, whose explicit tag its text does not fit (``!!int
    abc``: PyYAML's constructor raises a bare ValueError, with no line), and that error.

    Only walked after constructing the document failed, with a loader of its own: the one
    that failed is left mid-construction.
    """
    constructor = yaml.SafeLoader("")
    seen: set[int] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, yaml.ScalarNode):
            try:
                constructor.construct_object(current)
            except ValueError as exc:
                return current, exc
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(reversed(current.value))
        elif isinstance(current, yaml.MappingNode):
            stack.extend(child for pair in reversed(current.value) for child in reversed(pair))
    return None


def _tag_problem(scalar: yaml.ScalarNode, exc: ValueError, path: Path) -> Problem:
    tag = scalar.tag.replace("tag:yaml.org,2002:", "!!")
    mark = scalar.start_mark
    message = (
        f"{scalar.value!r} is tagged {tag} but cannot be read as one ({clip(str(exc))}): "
        "fix the value, or remove the tag"
    )
    return Problem(path, mark.line + 1, mark.column + 1, "", message)


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


def _check_keys(
    node: yaml.Node,
    at: YamlPath,
    path: Path,
    problems: list[Problem],
    walked: set[int],
    written: AsWritten,
) -> None:
    """Duplicate keys below ``node``, as problems; and in ``written``, what ``line_of`` needs.

    A node met again is an alias (or a recursive one, &a [*a]): descending again would
    repeat its duplicate-key problems and, for nested aliases, take exponential time.
    """
    walked.add(id(node))
    children: list[tuple[int, yaml.Node, YamlPath]] = []
    if isinstance(node, yaml.MappingNode):
        first_seen: dict[str, int] = {}
        for position, (key_node, value_node) in enumerate(node.value):
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
            children.append((position, value_node, (*at, key)))
        if _MERGE_KEY in first_seen:
            written.merging[id(node)] = list(node.value)
    elif isinstance(node, yaml.SequenceNode):
        children = [(index, item, (*at, index)) for index, item in enumerate(node.value)]
    for position, child, child_at in children:
        if id(child) in walked:
            written.aliases.add((id(node), position))
        else:
            _check_keys(child, child_at, path, problems, walked, written)
