"""Hostile policy files (issue 11, items 1-4): each is that file's problem, bounded in size,
and the other files load.

The bombs here are the ones that stalled the controller before the limits: nested aliases
(387 million nodes from 750 bytes), 10,000 nesting levels (RecursionError), a 100,000-digit
number (ValueError), a symlink loop in the policy directory (OSError for the whole load).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_loader import policy_yaml, problems_of, write

from autoscaler.cli import EXIT_CRASH, EXIT_INPUT, main
from autoscaler.policy_sources import loader, yaml_documents
from autoscaler.policy_sources.loader import MAX_FILE_BYTES, PolicyStore, load_paths
from autoscaler.policy_sources.problems import MAX_QUOTED_CHARS
from autoscaler.policy_sources.yaml_limits import MAX_ALIAS_NODES

GOOD = policy_yaml("good", "good")

# Longest message a problem may have: the fixed wording plus a few quoted, clipped values.
MESSAGE_BOUND = 600


def alias_bomb(levels: int, used_as: str = "apiVersion") -> str:
    text = "x0: &b0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for level in range(1, levels + 1):
        text += f"x{level}: &b{level} [" + ", ".join([f"*b{level - 1}"] * 9) + "]\n"
    return text + f"{used_as}: *b{levels}\n" + GOOD.split("\n", 1)[1]


@pytest.fixture(params=["libyaml", "pure-python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    # libyaml is optional in PyYAML builds and has limits of its own (1,000 flow levels):
    # the bounds must hold with either parser.
    if request.param == "pure-python":
        monkeypatch.setattr(yaml_documents, "_FAST_LOADER", None)
    return str(request.param)


def test_nested_aliases_are_refused_with_one_short_problem(tmp_path: Path, parser: str) -> None:
    # Five levels: 59,049 nodes, enough to exceed the bound yet cheap enough to run before
    # the fix, when the apiVersion message echoed every one of them.
    bomb = write(tmp_path / "bomb.yaml", alias_bomb(5))
    [problem] = problems_of([bomb])
    assert problem.line == 5  # x4: 81 + 729 + 6,561 + 59,049 nodes added by aliases so far
    assert f"more than {MAX_ALIAS_NODES:,} nodes" in problem.message
    assert len(str(problem)) < MESSAGE_BOUND


def test_the_billion_laughs_bomb_is_refused_before_anything_expands(tmp_path: Path) -> None:
    bomb = write(tmp_path / "bomb.yaml", alias_bomb(9))
    assert len(bomb.read_bytes()) < 800
    [problem] = problems_of([bomb])
    assert "aliases here expand" in problem.message


def test_an_alias_used_as_the_kind_is_not_expanded_into_the_message(tmp_path: Path) -> None:
    # Within the alias bound, but still no echo of the aliased list.
    text = "shared: &s [a, b, c, d, e, f, g, h]\nkind: *s\n" + GOOD.split("kind: ScalingPolicy\n", 1)[1]
    [problem] = problems_of([write(tmp_path / "p.yaml", "apiVersion: autoscaler.swarm/v1\n" + text)])
    assert problem.message == "a list is not supported; this autoscaler reads only 'kind: ScalingPolicy'"


def test_shared_blocks_within_the_bound_still_load(tmp_path: Path) -> None:
    text = GOOD.replace(
        "  maxReplicas: 5\n",
        "  maxReplicas: 5\n  behavior:\n    scaleUp: &rules {selectPolicy: Min}\n    scaleDown: *rules\n",
    )
    [loaded] = load_paths([write(tmp_path / "p.yaml", text)])
    assert loaded.policy.spec.behavior.scale_down == loaded.policy.spec.behavior.scale_up


def test_ten_thousand_nesting_levels_are_a_problem_not_a_recursion_error(tmp_path: Path, parser: str) -> None:
    deep = write(
        tmp_path / "deep.yaml",
        GOOD.replace("  service: good\n", "  service: good\n  x: " + "[" * 10_000 + "]" * 10_000 + "\n"),
    )
    [problem] = problems_of([deep])
    assert (problem.line, problem.message) == (
        7,
        "refused: nested more than 32 levels deep; a policy needs 7",
    )


def test_a_hundred_thousand_digit_number_is_a_problem_not_a_value_error(tmp_path: Path, parser: str) -> None:
    big = write(tmp_path / "big.yaml", GOOD.replace("maxReplicas: 5", "maxReplicas: " + "9" * 100_000))
    [problem] = problems_of([big])
    assert problem.line == 7
    assert problem.message == "refused: a number of 100,000 characters; numbers here have at most 100"


def test_a_long_quoted_text_is_a_string_not_a_number(tmp_path: Path) -> None:
    text = GOOD.replace("  name: good\n", f"  name: good\n  labels:\n    note: '{'9' * 200}'\n")
    [loaded] = load_paths([write(tmp_path / "p.yaml", text)])
    assert loaded.policy.metadata.labels["note"] == "9" * 200


def test_a_long_kind_is_quoted_only_in_part(tmp_path: Path) -> None:
    text = GOOD.replace("kind: ScalingPolicy", "kind: " + "k" * 500_000)
    [problem] = problems_of([write(tmp_path / "p.yaml", text)])
    assert problem.message.startswith(
        "'" + "k" * MAX_QUOTED_CHARS + "... (500,000 characters)' is not supported"
    )
    assert len(problem.message) < MESSAGE_BOUND


def test_a_symlink_loop_in_the_directory_is_its_own_problem(tmp_path: Path) -> None:
    write(tmp_path / "good.yaml", GOOD)
    os.symlink("loop.yaml", tmp_path / "loop.yaml")
    [problem] = problems_of([tmp_path])
    assert (problem.path, problem.line) == (tmp_path / "loop.yaml", 0)
    assert problem.message == "cannot read: Too many levels of symbolic links"
    result = PolicyStore([tmp_path]).reload()
    assert result.added == ["good"]
    assert [str(p) for p in result.problems] == [
        f"{tmp_path / 'loop.yaml'}: cannot read: Too many levels of symbolic links"
    ]


def test_a_symlink_loop_named_directly_is_its_own_problem(tmp_path: Path) -> None:
    good = write(tmp_path / "good.yaml", GOOD)
    os.symlink("loop", tmp_path / "loop")
    [problem] = problems_of([tmp_path / "loop", good])
    assert problem.message == "cannot read: Too many levels of symbolic links"


def test_a_directory_that_turns_into_a_loop_keeps_its_policies(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    write(real / "good.yaml", GOOD)
    link = tmp_path / "policies"
    os.symlink(real, link)
    store = PolicyStore([link])
    assert store.reload().added == ["good"]
    link.unlink()
    os.symlink("policies", link)  # now a loop: nothing under it can be listed
    result = store.reload()
    assert result.removed == []
    assert [p.policy.name for p in store.policies] == ["good"]
    assert [p.message for p in result.problems] == ["cannot read: Too many levels of symbolic links"]


def test_a_file_over_the_size_cap_is_refused_and_the_others_load(tmp_path: Path) -> None:
    padding = "# " + "x" * 78 + "\n"
    huge = write(tmp_path / "huge.yaml", GOOD + padding * (MAX_FILE_BYTES // len(padding) + 1))
    write(tmp_path / "good.yaml", GOOD.replace("good", "other"))
    [problem] = problems_of([tmp_path])
    assert (problem.path, problem.line) == (huge, 0)
    assert problem.message.startswith("refused: larger than 1,024 KiB")
    store = PolicyStore([tmp_path])
    result = store.reload()
    assert result.added == ["other"]
    assert [p.path for p in result.problems] == [huge]


def test_a_file_at_the_size_cap_loads(tmp_path: Path) -> None:
    text = GOOD + "#" * (MAX_FILE_BYTES - len(GOOD) - 1) + "\n"
    assert len(text.encode()) == MAX_FILE_BYTES
    assert [p.policy.name for p in load_paths([write(tmp_path / "p.yaml", text)])] == ["good"]


def test_an_unexpected_parse_error_stays_in_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever yaml_limits does not know of yet must not stop the other files loading.
    broken = write(tmp_path / "a.yaml", GOOD.replace("good", "broken"))
    write(tmp_path / "b.yaml", GOOD)
    real_parse = loader.parse_policy_text

    def parse(text: str, path: Path) -> object:
        if path == broken:
            raise RecursionError("maximum recursion depth exceeded")
        return real_parse(text, path)

    monkeypatch.setattr(loader, "parse_policy_text", parse)
    result = PolicyStore([tmp_path]).reload()
    assert result.added == ["good"]
    assert [str(p) for p in result.problems] == [
        f"{broken}: cannot be read: RecursionError: maximum recursion depth exceeded"
    ]


def test_validate_exits_1_for_problems_and_70_for_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bomb = write(tmp_path / "bomb.yaml", alias_bomb(9))
    assert main(["validate", str(bomb)]) == EXIT_INPUT
    assert "aliases here expand" in capsys.readouterr().out

    def crash(paths: object) -> object:
        raise RuntimeError("a bug")

    monkeypatch.setattr("autoscaler.cli.validate.load_paths", crash)
    assert main(["validate", str(bomb)]) == EXIT_CRASH
    err = capsys.readouterr().err
    assert "RuntimeError: a bug" in err
    assert "internal error (a bug, not a problem in your input)" in err


def test_a_file_that_grows_while_read_is_read_whole_up_to_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # _read_capped reads as much as fstat says the file holds, then on if there is more.
    class Shrunk:
        st_size = 10

    monkeypatch.setattr(loader.os, "fstat", lambda fd: Shrunk())
    [loaded] = load_paths([write(tmp_path / "good.yaml", GOOD)])
    assert loaded.policy.name == "good"
    huge = write(tmp_path / "huge.yaml", GOOD + "#" * MAX_FILE_BYTES + "\n")
    [problem] = problems_of([huge])
    assert problem.message.startswith("refused: larger than 1,024 KiB")
