"""The policy load composes each file once (issue 15): the bounds checked on libyaml's node tree
agree with the event-stream check, and lines come from the tree as the file wrote it.

``yaml_limits`` checks the same bounds twice over: on the tree (``exceeds_limits``, libyaml)
and on the events (``check_limits``, the pure parser, and the wording of every refusal).
A file one check refuses and the other lets through would be loaded by one parser and
refused by the other, so they are compared here on each side of every bound.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_loader import line_of, policy_yaml, problems_of, write
from test_loader_limits import alias_bomb, parser  # noqa: F401 (parser: the fixture)

from autoscaler.policy_sources.yaml_limits import MAX_ALIAS_NODES, MAX_DEPTH, check_limits, exceeds_limits

GOOD = policy_yaml("good", "good")
LIST_OF_100 = "s: &s [" + ", ".join(["x"] * 99) + "]\n"  # 100 nodes: the list and its items


def nested(levels: int) -> str:
    return "x: " + "[" * levels + "]" * levels + "\n"


CASES = {
    "a policy": (GOOD, False),
    "nested to the bound": (nested(MAX_DEPTH - 1), False),  # the top mapping is a level too
    "nested past the bound": (nested(MAX_DEPTH), True),
    "aliases adding the bound": (LIST_OF_100 + "b: [" + ", ".join(["*s"] * 100) + "]\n", False),
    "aliases adding past the bound": (LIST_OF_100 + "b: [" + ", ".join(["*s"] * 101) + "]\n", True),
    "the same in block style": (LIST_OF_100 + "b:\n" + "  - *s\n" * 101, True),
    "aliases of scalars": ("a: &a x\nb: [" + ", ".join(["*a"] * MAX_ALIAS_NODES) + "]\n", False),
    "one alias of a scalar more": ("a: &a x\nb: [" + ", ".join(["*a"] * (MAX_ALIAS_NODES + 1)) + "]\n", True),
    "aliases of aliases": (alias_bomb(2), False),  # 90 + 819 + 820 (the use) nodes
    "the same one level up": (alias_bomb(3), True),  # + 7,380, then 7,381 for the use
    "an alias inside its anchor": ("a: &a [1, *a]\n", True),
    "an alias inside its anchor's mapping": ("a: &a {x: {y: *a}}\n", True),
    "an alias of a closed sibling": ("a: [&a [1], *a]\n", False),
    "each document its own anchors": (
        "---\n".join([LIST_OF_100 + "b: [" + ", ".join(["*s"] * 60) + "]\n"] * 2),
        False,
    ),
    "a number at the bound": ("a: 1" + "0" * 99 + "\n", False),
    "a number past the bound": ("a: 1" + "0" * 100 + "\n", True),
    "a float past the bound": ("a: 1." + "0" * 100 + "\n", True),
    "a quoted number is a string": ("a: '1" + "0" * 200 + "'\n", False),
    "a number tagged as a string": ("a: !!str 1" + "0" * 200 + "\n", False),
    "a string tagged as a number": ("a: !!int '1" + "0" * 200 + "'\n", True),
    "a long key": ("1" + "0" * 200 + ": x\n", True),
}


@pytest.mark.parametrize("case", CASES)
def test_the_tree_and_the_events_agree_on_each_side_of_every_bound(case: str) -> None:
    text, beyond = CASES[case]
    loader = yaml.CSafeLoader(text)
    try:
        trees = []
        while loader.check_node():
            trees.append(loader.get_node())
    finally:
        loader.dispose()
    assert any(exceeds_limits(tree) for tree in trees if tree is not None) is beyond
    assert bool(check_limits([yaml.CSafeLoader], text, Path("p.yaml"))) is beyond
    assert bool(check_limits([yaml.SafeLoader], text, Path("p.yaml"))) is beyond


@pytest.mark.usefixtures("parser")
def test_a_long_number_tagged_in_quotes_is_refused_not_a_value_error(tmp_path: Path) -> None:
    # int() refuses more than 4,300 digits with an error that names no line.
    big = write(
        tmp_path / "big.yaml", GOOD.replace("maxReplicas: 5", "maxReplicas: !!int '" + "9" * 5000 + "'")
    )
    [problem] = problems_of([big])
    assert (problem.line, problem.message) == (
        7,
        "refused: a number of 5,000 characters; numbers here have at most 100",
    )


@pytest.mark.usefixtures("parser")
@pytest.mark.parametrize(
    ("scale_down", "used_at"),
    [
        # PyYAML's constructor merges '<<' entries into the node tree in place; the line is
        # still found in the tree as the file wrote it.
        ("    scaleDown:\n      <<: *rules\n      stabilizationWindowSeconds: 0\n", "scaleDown:"),
        # A field below an alias points at the line that uses the alias.
        ("    scaleDown: *rules\n", "scaleDown: *rules"),
    ],
    ids=["merged-from-an-anchor", "below-an-alias"],
)
def test_a_field_from_an_anchor_points_at_the_line_that_uses_it(
    tmp_path: Path, scale_down: str, used_at: str
) -> None:
    text = GOOD.replace(
        "  maxReplicas: 5\n",
        "  maxReplicas: 5\n  behavior:\n    scaleUp: &rules\n      selectPolicy: Mi\n" + scale_down,
    )
    file = write(tmp_path / "p.yaml", text)
    problems = problems_of([file])
    assert [(p.line, p.field) for p in problems] == [
        (line_of(file, "selectPolicy: Mi"), "spec.behavior.scaleUp.selectPolicy"),
        (line_of(file, used_at), "spec.behavior.scaleDown.selectPolicy"),
    ]


@pytest.mark.usefixtures("parser")
@pytest.mark.parametrize(("tagged", "reason"), [("!!int abc", "int()"), ("!!float zz", "float")])
def test_a_value_its_tag_refuses_is_a_problem_at_its_line(tmp_path: Path, tagged: str, reason: str) -> None:
    # PyYAML's constructor raises a bare ValueError for these, which said "cannot be read"
    # about the whole file, with no line.
    file = write(tmp_path / "p.yaml", GOOD.replace("  maxReplicas: 5\n", f"  maxReplicas: {tagged}\n"))
    [problem] = problems_of([file])
    assert (problem.line, problem.column) == (line_of(file, tagged), len("  maxReplicas: ") + 1)
    assert problem.message.startswith(
        f"{tagged.split()[1]!r} is tagged {tagged.split()[0]} but cannot be read"
    )
    assert reason in problem.message and problem.message.endswith("fix the value, or remove the tag")
