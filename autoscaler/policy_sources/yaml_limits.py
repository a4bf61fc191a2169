"""Bounds on what one policy file may make the parser do, checked before anything is constructed.

A YAML file can describe far more data than its size suggests: nine nested levels of
aliases in 750 bytes expand to 387 million nodes (the "billion laughs"), and 10,000
opening brackets nest deeper than Python's recursion limit. PyYAML constructs the data
recursively, and pydantic or a message walking it expands every alias, so a file over a
bound is refused as a whole with one problem saying which bound and where; the other
files load as usual.

The bounds are checked in one of two places, depending on the parser:

* libyaml composes the node tree in C and stops at 1,000 nesting levels itself, so its
  tree is safe to compose first; ``exceeds_limits`` then walks it (no deeper than the
  bound) before anything is constructed. Within the bounds, as every policy is, that is
  the only check. The tree keeps no alias's name or line, so a file beyond them is read
  once more as events, by ``check_limits``, for the problem.
* PyYAML's pure-Python composer is recursive: 10,000 levels would overflow it. So
  ``check_limits`` walks the parser's flat event stream first, which costs one pass and
  no recursion, and nothing is composed from a file beyond a bound.

Both count the same things: collections open at once; scalars that resolve to numbers;
aliases, each as the nodes it stands for (its anchor's, with aliases written out), summed
per document; an alias inside the node it names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import yaml

from autoscaler.policy_sources.problems import Problem

# A policy nests seven levels at most (spec.behavior.scaleUp.policies[0].periodSeconds);
# 32 leaves room for any hand-written layout and stays far from Python's recursion limit.
MAX_DEPTH = 32
# Nodes that aliases may add to a document, counted as if every alias were written out.
# Sharing a behavior block between directions adds tens; the bound only stops expansion
# bombs (each alias of an alias multiplies).
MAX_ALIAS_NODES = 10_000
# A number longer than this is a paste accident; Python refuses to read integers of more
# than 4,300 digits anyway, with an error that names no line.
MAX_NUMBER_CHARS = 100

_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


class _EventSource(Protocol):
    """The part of a PyYAML loader (pure or libyaml) that parses events and resolves tags."""

    def check_event(self) -> bool: ...
    def get_event(self) -> yaml.Event: ...
    def resolve(self, kind: type[yaml.Node], value: str, implicit: tuple[bool, bool]) -> str: ...
    def dispose(self) -> None: ...


@dataclass
class _Open:
    """A mapping or sequence whose end event has not come yet."""

    anchor: str | None
    nodes: int = 1  # itself, plus every node below it as if aliases were written out


def exceeds_limits(document: yaml.Node) -> bool:
    """Whether a document composed by libyaml is beyond a bound ``check_limits`` reports.

    Walks the tree in the order of the file, as ``check_limits`` walks the events, so both
    stop at the same bound; the tree is walked no deeper than ``MAX_DEPTH``.
    """
    return _TreeWalk().expanded(document, 1) is None


class _TreeWalk:
    """One document's node tree, each node walked once: a node met again is an alias."""

    def __init__(self) -> None:
        self.sizes: dict[int, int] = {}  # id(node) -> its node count, aliases written out
        self.open: set[int] = set()  # ids of the collections being walked
        self.alias_nodes = 0

    def expanded(self, node: yaml.Node, depth: int) -> int | None:
        """The nodes ``node`` stands for with aliases written out; None beyond a bound."""
        if isinstance(node, yaml.ScalarNode):
            total: int | None = None if _number_excess(node.tag, node.value) else 1
        elif depth > MAX_DEPTH:
            return None
        else:
            self.open.add(id(node))
            total = self._collection(node, depth)
            self.open.discard(id(node))
        if total is not None:
            self.sizes[id(node)] = total
        return total

    def _collection(self, node: yaml.Node, depth: int) -> int | None:
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        else:  # a mapping: each key, then its value, as the events come
            children = [child for pair in node.value for child in pair]
        total = 1
        for child in children:
            size = self.sizes.get(id(child))
            if size is not None:  # an alias of a node walked already
                self.alias_nodes += size
                if self.alias_nodes > MAX_ALIAS_NODES:
                    return None
            elif id(child) in self.open:  # an alias inside the node it names
                return None
            else:
                size = self.expanded(child, depth + 1)
                if size is None:
                    return None
            total += size
        return total


def check_limits(
    loader_classes: Sequence[Callable[[str], _EventSource]], text: str, path: Path
) -> list[Problem]:
    """The first bound ``text`` exceeds, as a problem; empty when it is within every bound.

    ``loader_classes`` are the parsers the parse that follows may use, in its order: a
    syntax error in one (libyaml also stops at 1,000 nesting levels) moves on to the next,
    as the parse does. A syntax error in the last ends the check quietly: the parse
    reports it, worded for the operator, and it cannot get past that point either.
    """
    for loader_class in loader_classes:
        loader = loader_class(text)
        try:
            return _first_excess(loader, path)
        except yaml.YAMLError:
            continue
        finally:
            loader.dispose()
    return []


def _first_excess(loader: _EventSource, path: Path) -> list[Problem]:
    open_nodes: list[_Open] = []
    sizes: dict[str, int] = {}  # anchor -> expanded node count, for this document
    alias_nodes = 0
    while loader.check_event():
        event = loader.get_event()
        line = event.start_mark.line + 1 if event.start_mark is not None else 1
        if isinstance(event, yaml.DocumentStartEvent):
            sizes, alias_nodes = {}, 0  # anchors do not reach across documents
        elif isinstance(event, yaml.CollectionStartEvent):
            open_nodes.append(_Open(event.anchor))
            if len(open_nodes) > MAX_DEPTH:
                return [_problem(path, line, f"nested more than {MAX_DEPTH} levels deep; a policy needs 7")]
        elif isinstance(event, yaml.CollectionEndEvent):
            done = open_nodes.pop()
            if done.anchor is not None:
                sizes[done.anchor] = done.nodes
            _add(open_nodes, done.nodes)
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                sizes[event.anchor] = 1
            _add(open_nodes, 1)
            too_long = _long_number(loader, event)
            if too_long:
                return [_problem(path, line, too_long)]
        elif isinstance(event, yaml.AliasEvent):
            anchor = str(event.anchor)
            if any(node.anchor == anchor for node in open_nodes):
                return [_problem(path, line, f"alias *{_short(anchor)} is used inside the node it names")]
            added = sizes.get(anchor, 1)  # an undefined alias is reported by the parse
            alias_nodes += added
            if alias_nodes > MAX_ALIAS_NODES:
                return [
                    _problem(
                        path,
                        line,
                        f"aliases here expand to more than {MAX_ALIAS_NODES:,} nodes; "
                        "write the shared part out instead of nesting aliases",
                    )
                ]
            _add(open_nodes, added)
    return []


def _add(open_nodes: list[_Open], nodes: int) -> None:
    if open_nodes:
        open_nodes[-1].nodes += nodes


def _long_number(loader: _EventSource, event: yaml.ScalarEvent) -> str:
    if len(event.value) <= MAX_NUMBER_CHARS:
        return ""
    tag = event.tag
    if tag is None or tag == "!":  # not tagged in the file: the tag the composer will resolve
        tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
    return _number_excess(tag, event.value)


def _number_excess(tag: str, value: str) -> str:
    # By tag, not by look: a quoted scalar resolves to a string unless tagged !!int.
    if tag not in _NUMBER_TAGS or len(value) <= MAX_NUMBER_CHARS:
        return ""
    return f"a number of {len(value):,} characters; numbers here have at most {MAX_NUMBER_CHARS}"


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:40] + "..."


def _problem(path: Path, line: int, message: str) -> Problem:
    return Problem(path, line, None, "", f"refused: {message}")
